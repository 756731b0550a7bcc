"""A separate virtualenv with flytekit, for interop tests and benchmarks.

Kept apart from the project venv because flytekit pins its own protobuf/grpc/flyteidl versions.
Path: ``$CONNECTOR_NB_FLYTEKIT_VENV`` or ``<repo>/.venv-flytekit``; created (and flytekit installed)
only when missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV_VAR = "CONNECTOR_NB_FLYTEKIT_VENV"
#: Override to pin, e.g. "flytekit==1.16.1".
SPEC_VAR = "CONNECTOR_NB_FLYTEKIT_SPEC"


def venv_dir() -> Path:
    return Path(os.environ.get(ENV_VAR) or REPO / ".venv-flytekit")


def _bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def _has_flytekit(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", "import flytekit"], capture_output=True, timeout=120)
    return probe.returncode == 0


def flytekit_python(install: bool = True) -> Path:
    """The venv's python, creating the venv and installing flytekit first if needed."""
    venv = venv_dir()
    python = _bin(venv, "python")
    if _has_flytekit(python):
        return python
    if not install:
        raise RuntimeError(f"no flytekit virtualenv at {venv}; set {ENV_VAR} or allow install")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    spec = os.environ.get(SPEC_VAR, "flytekit")
    subprocess.run([str(python), "-m", "pip", "install", "-q", spec], check=True, timeout=1800)
    return python


def pyflyte(python: Path) -> Path:
    """The ``pyflyte`` script next to ``python``."""
    return python.parent / "pyflyte"


if __name__ == "__main__":
    print(flytekit_python())
