"""Our client against flytekit's own connector service (``pyflyte serve connector``) in its own virtualenv."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from flytekit_env import flytekit_python, free_port, serve_connector_command, stop_process

from connector_nb.errors import NotSupportedError, UnknownTaskTypeError

pytestmark = [pytest.mark.interop, pytest.mark.timeout(1200)]
HERE = Path(__file__).resolve().parent


def _wait_serving(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    """Poll the health service, then ListAgents, until the service answers (or the process died)."""
    from flyteidl.admin import agent_pb2
    from flyteidl.service import agent_pb2_grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"pyflyte serve connector exited with {proc.returncode}:\n{log.read_text()}")
            try:
                health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
                agents = agent_pb2_grpc.AgentMetadataServiceStub(channel).ListAgents(
                    agent_pb2.ListAgentsRequest(), timeout=2
                )
                if health.status == health_pb2.HealthCheckResponse.SERVING and agents.agents:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"pyflyte serve connector did not come up within {timeout:g} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def markers(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("interop-markers")


@pytest.fixture(scope="module")
def flytekit_service(markers, tmp_path_factory):
    python = flytekit_python()
    port = free_port()
    log = tmp_path_factory.mktemp("interop-log") / "pyflyte.log"
    env = {**os.environ, "INTEROP_MARKER_DIR": str(markers), "PYTHONPATH": str(HERE)}
    with log.open("w") as out:
        proc = subprocess.Popen(
            serve_connector_command(python, port, free_port(), ["flytekit_connector_module"]),
            cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        _wait_serving(port, proc, log)
        yield f"grpc://127.0.0.1:{port}"
    finally:
        stop_process(proc)


@pytest.fixture
def session(flytekit_service):
    from connector_nb.session import Session

    s = Session(flytekit_service, timeout=10.0)
    yield s
    s.close()


def test_lists_flytekit_connectors(session):
    infos = {c.task_type: c for c in session.connectors()}
    assert infos["interop_sleep"].name == "Interop Sleep Connector"
    assert infos["interop_sleep"].version == 0 and not infos["interop_sleep"].is_sync
    assert "fast_get" in infos


def test_launch_poll_to_succeeded_with_outputs(session):
    run = session.launch("interop_sleep", seconds=0.3, fail=False)
    resource = run.wait(60)
    assert resource.phase == "SUCCEEDED", resource.message
    assert run.message == "woke up"
    assert len(run.outputs["job_id"]) == 8
    assert [t.phase for t in run.transitions][-1] == "SUCCEEDED"


def test_failed_run_shows_message(session):
    run = session.launch("interop_sleep", seconds=0.0, fail=True)
    assert run.wait(60).phase == "FAILED"
    assert "failed on request" in run.message


def test_cancel_reaches_the_service(session, markers):
    import json

    run = session.launch("interop_sleep", seconds=3600.0, fail=False)
    run.cancel()
    assert run.phase == "ABORTED"
    job_id = json.loads(run.resource_meta)["job_id"]
    assert (markers / f"{job_id}.deleted").read_text() == "deleted\n"


def test_metrics(session):
    run = session.launch("interop_sleep", seconds=0.0)
    run.wait(60)
    frame = run.metrics()
    assert list(frame["metric"]) == ["cpu_usage", "cpu_usage"]
    assert list(frame["value"]) == [0.25, 0.5]
    assert set(frame["job_id"]) == {run.outputs["job_id"]}


def test_no_logs_is_not_supported(session):
    run = session.launch("interop_sleep", seconds=0.0)
    run.wait(60)
    with pytest.raises(NotSupportedError, match="no logs"):
        run.logs()


def test_unknown_task_type_lists_what_flytekit_offers(session):
    with pytest.raises(UnknownTaskTypeError, match=r"registered: .*interop_sleep \(v0\)"):
        session.launch("nope", x=1)
