"""flytekit's own connectors in-process (SensorEngine/FileSensor, webhook, custom async and sync ones).

The cases need flytekit importable next to connector_nb, so they run in ``.venv-flytekit-nb``
(built from ``connector_nb[flytekit]`` by ``inproc_env``) as a pytest subprocess.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adapters_driver import run_cases

pytestmark = [pytest.mark.interop, pytest.mark.timeout(3600)]


def test_flytekit_connectors_in_process():
    run_cases("flytekit", "flytekit_cases.py")
