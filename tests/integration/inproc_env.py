"""Virtualenvs that hold connector_nb *and* a connector framework, for the in-process adapter tests.

``.venv-flytekit-nb`` has ``connector_nb[flytekit]``, ``.venv-flyte2-nb`` has ``connector_nb[flyte]`` (both
editable, plus the test tools). Paths: ``$CONNECTOR_NB_FLYTEKIT_NB_VENV`` / ``$CONNECTOR_NB_FLYTE2_NB_VENV`` or
``<repo>/.venv-<name>``. Each is created, and the project installed in it, only when missing.
``python tests/integration/inproc_env.py flytekit|flyte`` builds one (``make inproc-venvs`` builds both).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: Test tools the in-process suites and the notebook need in those venvs (not the browser/lab ones).
TEST_TOOLS = ["pytest>=8", "pytest-asyncio>=0.23", "pytest-timeout>=2.2", "nbval>=0.11", "nbclient>=0.10",
              "ipykernel>=6.29"]
#: extra -> (venv name, environment variable, import that proves the venv is usable)
FRAMEWORKS = {
    "flytekit": (".venv-flytekit-nb", "CONNECTOR_NB_FLYTEKIT_NB_VENV",
                 "import connector_nb, flytekit.extend.backend.base_connector, flytekit.sensor,"
                 " flytekit.extras.webhook, nbval"),
    "flyte": (".venv-flyte2-nb", "CONNECTOR_NB_FLYTE2_NB_VENV",
              "import connector_nb, flyte.connectors, flyteidl2.core.tasks_pb2, nbval"),
}


def venv_dir(extra: str) -> Path:
    """Where the venv for ``extra`` ("flytekit" or "flyte") lives."""
    name, env_var, _ = FRAMEWORKS[extra]
    return Path(os.environ.get(env_var) or REPO / name)


def _python(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / "python"


def usable(extra: str) -> bool:
    """Whether the venv for ``extra`` exists and imports connector_nb and the framework."""
    python = _python(venv_dir(extra))
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", FRAMEWORKS[extra][2]], capture_output=True, timeout=300)
    return probe.returncode == 0


def python_for(extra: str, install: bool = True) -> Path:
    """The venv's python, creating the venv and installing ``-e .[extra]`` first if needed."""
    venv = venv_dir(extra)
    python = _python(venv)
    if usable(extra):
        return python
    if not install:
        raise RuntimeError(f"no usable virtualenv at {venv}; run: python tests/integration/inproc_env.py {extra}")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", f"{REPO}[{extra}]", *TEST_TOOLS],
                   check=True, timeout=3600)
    return python


if __name__ == "__main__":
    for name in sys.argv[1:] or list(FRAMEWORKS):
        print(python_for(name))
