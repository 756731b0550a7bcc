"""A separate virtualenv with Flyte 2 (``flyte[connector]``), whose ``c0`` serves flyteidl2's connector services.

Kept apart from the project venv like flytekit's. Path: ``$CONNECTOR_NB_FLYTE2_VENV`` or ``<repo>/.venv-flyte2``;
created (and Flyte 2 installed) only when missing. ``make flyte2-venv`` runs this module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flytekit_env import LOOPBACK_PATCH, REPO, ensure_venv

ENV_VAR = "CONNECTOR_NB_FLYTE2_VENV"
#: Override to pin, e.g. "flyte[connector]==2.12.1". The extra brings the service's deps (prometheus, health).
SPEC_VAR = "CONNECTOR_NB_FLYTE2_SPEC"
_PROBE = "import flyte.connectors._server, flyteidl2.connector.service_pb2_grpc, grpc_health.v1.health"

#: Runs Flyte 2's ``c0`` (its connector service CLI) bound to 127.0.0.1 only.
_LOOPBACK_C0 = LOOPBACK_PATCH + """
from flyte._bin.connect import main
sys.argv[0] = "c0"
main()
"""


def venv_dir() -> Path:
    """Where the Flyte 2 virtualenv lives."""
    return Path(os.environ.get(ENV_VAR) or REPO / ".venv-flyte2")


def flyte2_python(install: bool = True) -> Path:
    """The venv's python, creating the venv and installing ``flyte[connector]`` first if needed."""
    return ensure_venv(venv_dir(), os.environ.get(SPEC_VAR, "flyte[connector]"), _PROBE, ENV_VAR, install)


def c0_command(python: Path, port: int, prometheus_port: int, modules: list[str]) -> list[str]:
    """argv for ``c0 --port P --prometheus_port Q --modules M...`` on loopback only."""
    argv = [str(python), "-c", _LOOPBACK_C0, "--port", str(port), "--prometheus_port", str(prometheus_port)]
    for module in modules:
        argv += ["--modules", module]
    return argv


def wait_health(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    """Wait until the gRPC health service on 127.0.0.1:port says SERVING (fails if the process died)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from connector_nb.testing import wait_until

    def serving() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited with {proc.returncode}:\n{log.read_text()}")
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        wait_until(serving, timeout=timeout, interval=0.2, what=f"the service on port {port} to serve")


if __name__ == "__main__":
    print(flyte2_python())
