"""flytekit's built-in sync ``webhook`` connector, served by ``pyflyte serve connector`` (no modules), over
``SyncAgentService.ExecuteTaskSync``: it POSTs to a local ``http.server`` on 127.0.0.1."""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from flytekit_env import flytekit_python, free_port, serve_connector_command, stop_process

from connector_nb import Session
from connector_nb.errors import UnknownTaskTypeError

pytestmark = [pytest.mark.interop, pytest.mark.timeout(1200)]

#: Serializes a WebhookTask with flytekit's own translator: the TaskTemplate exactly as flytekit registers it.
_TEMPLATE_SCRIPT = """
import base64, sys
from collections import OrderedDict
from flytekit.configuration import ImageConfig, SerializationSettings
from flytekit.extras.webhook import WebhookTask
from flytekit.tools.translator import get_serializable

task = WebhookTask(name="notify", url=sys.argv[1], method="POST", headers={"Content-Type": "application/json"},
                   data={"text": "{inputs.s}", "n": "{inputs.n}"}, dynamic_inputs={"s": str, "n": int},
                   show_data=True)
settings = SerializationSettings(image_config=ImageConfig.auto_default_image())
print(base64.b64encode(get_serializable(OrderedDict(), settings, task).template.to_flyte_idl().SerializeToString()))
"""


class _Hook(http.server.BaseHTTPRequestHandler):
    """Records each POST body; answers 200, or 500 under /fail."""

    received: list[tuple[str, Any]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append((self.path, body))
        status = 500 if self.path == "/fail" else 200
        payload = b'{"ok": false}' if status == 500 else b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        """Quiet: no request lines on stderr."""


@pytest.fixture(scope="module")
def hook() -> Iterator[str]:
    _Hook.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def python() -> Path:
    return flytekit_python()


@pytest.fixture(scope="module")
def service(python, tmp_path_factory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("sync-interop-log") / "pyflyte.log"
    with log.open("w") as out:
        proc = subprocess.Popen(serve_connector_command(python, port, free_port(), []), env=dict(os.environ),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_serving(port, proc, log)
        yield f"grpc://127.0.0.1:{port}"
    finally:
        stop_process(proc)


def _wait_serving(port: int, proc: subprocess.Popen, log: Path) -> None:
    """Until ListAgents lists the built-in connectors (fails at once if the service exited)."""
    from flyteidl.admin import agent_pb2
    from flyteidl.service import agent_pb2_grpc

    from connector_nb.testing import wait_until

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"pyflyte serve connector exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = agent_pb2_grpc.AgentMetadataServiceStub(channel)
                return bool(stub.ListAgents(agent_pb2.ListAgentsRequest(), timeout=2).agents)
        except grpc.RpcError:
            return False

    wait_until(answers, timeout=120, interval=0.2, what="pyflyte serve connector to answer ListAgents")


def _webhook_template(python: Path, url: str) -> Any:
    from flyteidl.core import tasks_pb2

    out = subprocess.run([str(python), "-c", _TEMPLATE_SCRIPT, url], capture_output=True, text=True, timeout=300,
                         check=True).stdout.strip()
    return tasks_pb2.TaskTemplate.FromString(base64.b64decode(out.removeprefix("b'").removesuffix("'")))


def test_webhook_is_listed_as_sync(service):
    with Session(service) as remote:
        infos = {c.task_type: c for c in remote.connectors()}
    assert infos["webhook"].is_sync and not infos["sensor"].is_sync


def test_webhook_posts_and_succeeds_with_outputs(service, hook, python, tmp_path):
    template = _webhook_template(python, f"{hook}/ok")
    assert template.type == "webhook" and template.custom.fields["method"].string_value == "POST"
    before = len(_Hook.received)
    with Session(service, output_dir=str(tmp_path)) as remote:
        run = remote.launch(template, s="hello", n=3)
        assert run.phase == "SUCCEEDED", run.message
        assert run.message == "Webhook was successfully invoked!"
        assert [t.phase for t in run.transitions] == ["QUEUED", "SUCCEEDED"] and run.get_calls == 0
        info = run.outputs["info"]
    assert _Hook.received[before:] == [("/ok", {"text": "hello", "n": 3})]
    assert info["status_code"] == 200 and json.loads(info["response_data"]) == {"ok": True}
    assert info["input_data"] == {"text": "hello", "n": 3}


def test_webhook_failure_is_a_failed_run(service, hook, python, tmp_path):
    template = _webhook_template(python, f"{hook}/fail")
    with Session(service, output_dir=str(tmp_path)) as remote:
        run = remote.launch(template, s="x", n=1)
    assert run.phase == "FAILED" and "status code 500" in run.message
    assert run.outputs == {}


def test_unknown_sync_task_type_is_not_found(service, python, hook):
    import asyncio

    from flyteidl.core import literals_pb2

    from connector_nb.transports.grpc import GrpcTransport

    template = _webhook_template(python, f"{hook}/ok")
    template.type = "no_such_webhook"

    async def scenario() -> None:
        transport = GrpcTransport(service, protocol="v1")
        try:
            with pytest.raises(UnknownTaskTypeError, match="webhook") as info:
                await transport.execute_sync(template, literals_pb2.LiteralMap(), "/tmp/x")
            assert info.value.grpc_code == grpc.StatusCode.NOT_FOUND.name  # type: ignore[attr-defined]
        finally:
            await transport.aclose()

    asyncio.run(scenario())


def test_our_server_serves_flytekit_webhook_over_execute_task_sync():
    """flytekit's WebhookConnector registered as it is, served by us (runs in ``.venv-flytekit-nb``)."""
    from adapters_driver import run_cases

    run_cases("flytekit", "sync_cases.py")


#: flytekit's FileSensor task, serialized by flytekit itself (its custom names the sensor class to poke).
_SENSOR_SCRIPT = """
import base64
from collections import OrderedDict
from flytekit.configuration import ImageConfig, SerializationSettings
from flytekit.sensor.file_sensor import FileSensor
from flytekit.tools.translator import get_serializable
task = FileSensor(name="wait_for_file")
settings = SerializationSettings(image_config=ImageConfig.auto_default_image())
print(base64.b64encode(get_serializable(OrderedDict(), settings, task).template.to_flyte_idl().SerializeToString()))
"""


def _sensor_template(python: Path) -> Any:
    from flyteidl.core import tasks_pb2

    out = subprocess.run([str(python), "-c", _SENSOR_SCRIPT], capture_output=True, text=True, timeout=300,
                         check=True).stdout.strip()
    return tasks_pb2.TaskTemplate.FromString(base64.b64decode(out.removeprefix("b'").removesuffix("'")))


def test_file_sensor_over_grpc_runs_until_the_file_appears_and_cancels(service, python, tmp_path):
    from connector_nb.testing import wait_until

    template = _sensor_template(python)
    target = tmp_path / "report.csv"
    with Session(service, journal=False) as session:
        run = session.launch(template, path=str(target))
        wait_until(lambda: run.phase == "RUNNING" and run.get_calls >= 2, timeout=60, what="the sensor to poke")
        assert not run.done  # no file yet: it keeps RUNNING
        target.write_text("ready\n")
        assert run.wait(timeout=120).phase == "SUCCEEDED"
        never = session.launch(template, path=str(tmp_path / "never.csv"))
        wait_until(lambda: never.phase == "RUNNING", timeout=60, what="RUNNING")
        never.cancel()
        assert never.phase == "ABORTED" and never.done
