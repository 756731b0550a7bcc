"""A Flyte 2 ``AsyncConnector`` in-process, unmodified.

The cases need ``flyte`` importable next to connector_nb, so they run in ``.venv-flyte2-nb``
(built from ``connector_nb[flyte]`` by ``inproc_env``) as a pytest subprocess.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adapters_driver import run_cases

pytestmark = [pytest.mark.interop, pytest.mark.timeout(3600)]


def test_flyte2_connector_in_process():
    run_cases("flyte", "flyte2_cases.py")
