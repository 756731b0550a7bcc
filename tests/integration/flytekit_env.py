"""A separate virtualenv with flytekit, for interop tests and benchmarks.

Kept apart from the project venv because flytekit pins its own protobuf/grpc/flyteidl versions.
Path: ``$CONNECTOR_NB_FLYTEKIT_VENV`` or ``<repo>/.venv-flytekit``; created (and flytekit installed)
only when missing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV_VAR = "CONNECTOR_NB_FLYTEKIT_VENV"
#: Override to pin, e.g. "flytekit[connector]==1.16.1". The extra brings the service's deps
#: (prometheus-client, grpcio-health-checking) that ``pyflyte serve connector`` needs.
SPEC_VAR = "CONNECTOR_NB_FLYTEKIT_SPEC"


def venv_dir() -> Path:
    return Path(os.environ.get(ENV_VAR) or REPO / ".venv-flytekit")


def _bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def _imports(python: Path, probe: str) -> bool:
    if not python.exists():
        return False
    return subprocess.run([str(python), "-c", probe], capture_output=True, timeout=120).returncode == 0


def flytekit_python(install: bool = True) -> Path:
    """The venv's python, creating the venv and installing flytekit first if needed."""
    return ensure_venv(venv_dir(), os.environ.get(SPEC_VAR, "flytekit[connector]"),
                       "import flytekit.extend.backend.connector_service, grpc_health.v1.health", ENV_VAR, install)


def ensure_venv(venv: Path, spec: str, probe: str, env_var: str, install: bool = True) -> Path:
    """Python of ``venv`` once ``probe`` imports there; creates the venv and installs ``spec`` when it does not."""
    python = _bin(venv, "python")
    if _imports(python, probe):
        return python
    if not install:
        raise RuntimeError(f"no usable virtualenv at {venv}; set {env_var} or allow install")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(python), "-m", "pip", "install", "-q", spec], check=True, timeout=1800)
    return python


def pyflyte(python: Path) -> Path:
    """The ``pyflyte`` script next to ``python``."""
    return python.parent / "pyflyte"


if __name__ == "__main__":
    print(flytekit_python())


#: Binds grpc.aio servers and Prometheus to 127.0.0.1 only. pyflyte and Flyte 2's c0 always bind ``[::]``
#: (and Prometheus on 0.0.0.0) with no host option, so this patches both before handing over to their CLI.
LOOPBACK_PATCH = """
import sys
import grpc.aio._server as aio_server
import prometheus_client

_add = aio_server.Server.add_insecure_port
aio_server.Server.add_insecure_port = lambda self, address: _add(self, address.replace("[::]", "127.0.0.1"))
_http = prometheus_client.start_http_server
prometheus_client.start_http_server = lambda port, addr="127.0.0.1", *a, **k: _http(port, "127.0.0.1", *a, **k)
"""
_LOOPBACK_PYFLYTE = LOOPBACK_PATCH + """
from flytekit.clis.sdk_in_container.pyflyte import main
sys.argv[0] = "pyflyte"
main()
"""


def serve_connector_command(python: Path, port: int, prometheus_port: int, modules: list[str]) -> list[str]:
    """argv for ``pyflyte serve connector --port P --prometheus_port Q --modules M...`` on loopback only."""
    argv = [str(python), "-c", _LOOPBACK_PYFLYTE, "serve", "connector", "--port", str(port),
            "--prometheus_port", str(prometheus_port)]
    for module in modules:
        argv += ["--modules", module]
    return argv


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (servers in tests bind nothing else)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if the service has not stopped within 15 s."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
