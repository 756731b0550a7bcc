"""Our client against Flyte 2's own connector service (``c0`` from ``flyte[connector]``) in its own virtualenv.

c0 speaks only flyteidl2 (``AsyncConnectorService`` / ``ConnectorMetadataService``): ``protocol="auto"`` must
find that out by itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from flyte2_env import c0_command, flyte2_python, wait_health
from flytekit_env import free_port, stop_process

from connector_nb.errors import ConnectorCallError, NotSupportedError, UnknownTaskTypeError
from connector_nb.secrets import MASK
from connector_nb.session import Session

pytestmark = [pytest.mark.interop, pytest.mark.timeout(1200)]
HERE = Path(__file__).resolve().parent
SECRET = "f2-5ecret-token-81"


@pytest.fixture(scope="module")
def markers(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("flyte2-markers")


@pytest.fixture(scope="module")
def c0_service(markers, tmp_path_factory):
    python = flyte2_python()
    port = free_port()
    log = tmp_path_factory.mktemp("flyte2-log") / "c0.log"
    env = {**os.environ, "INTEROP_MARKER_DIR": str(markers), "PYTHONPATH": str(HERE)}
    with log.open("w") as out:
        proc = subprocess.Popen(c0_command(python, port, free_port(), ["flyte2_connector_module"]),
                                cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_health(port, proc, log)
        yield f"grpc://127.0.0.1:{port}"
    finally:
        stop_process(proc)


@pytest.fixture
def session(c0_service):
    s = Session(c0_service, timeout=20.0, secrets={"api_token": SECRET})
    yield s
    s.close()


def test_auto_detects_flyteidl2_and_lists(session):
    infos = {c.task_type: c for c in session.connectors()}
    assert session.transport.protocol == "v2"
    assert infos["f2_sleep"].name == "Flyte2 Sleep Connector"
    assert infos["f2_sleep"].version == 0 and not infos["f2_sleep"].is_sync


def test_launch_transitions_and_outputs(session, markers):
    run = session.launch("f2_sleep", seconds=0.5, fail=False)
    assert run.wait(60).phase == "SUCCEEDED", run.message
    phases = [t.phase for t in run.transitions]
    assert "RUNNING" in phases and phases[-1] == "SUCCEEDED"
    assert run.message == "woke up"
    assert run.outputs["count"] == 3 and len(run.outputs["job_id"]) == 8
    # v2's Connection.secrets reached the Flyte 2 connector as a keyword argument.
    assert (markers / f"{run.outputs['job_id']}.created").read_text() == SECRET


def test_failed_run_shows_message(session):
    run = session.launch("f2_sleep", seconds=0.0, fail=True)
    assert run.wait(60).phase == "FAILED"
    assert "failed on request" in run.message


def test_cancel_calls_the_service_delete(session, markers):
    run = session.launch("f2_sleep", seconds=3600.0, fail=False)
    run.cancel()
    assert run.phase == "ABORTED"
    job_id = json.loads(run.resource_meta)["job_id"]
    assert (markers / f"{job_id}.deleted").read_text() == "deleted\n"


def test_unknown_task_type_lists_what_c0_offers(session):
    with pytest.raises(UnknownTaskTypeError, match=r"registered: .*f2_sleep \(v0\)"):
        session.launch("nope", x=1)


def test_metrics_and_logs(session):
    run = session.launch("f2_sleep", seconds=0.0)
    assert run.wait(60).phase == "SUCCEEDED"
    frame = run.metrics()
    assert list(frame["metric"]) == ["cpu_usage", "cpu_usage"]
    assert list(frame["value"]) == [0.25, 0.5]
    logs = str(run.logs())
    assert f"{run.outputs['job_id']} line 0" in logs and f"{run.outputs['job_id']} line 1" in logs


def test_connector_error_echoing_the_secret_is_masked(session):
    with pytest.raises(ConnectorCallError, match="the service rejected key") as info:
        session.launch("f2_sleep", explode=True)
    assert SECRET not in str(info.value) and MASK in str(info.value)


def test_no_metrics_or_logs_is_not_supported(session):
    run = session.launch("f2_plain")
    assert run.wait(60).phase == "SUCCEEDED"
    with pytest.raises(NotSupportedError, match="no metrics"):
        run.metrics()
    with pytest.raises(NotSupportedError, match="no logs"):
        run.logs()
