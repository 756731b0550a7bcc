"""flytekit connectors in-process, unmodified. Runs only in ``.venv-flytekit-nb`` (connector_nb + flytekit);
``tests/integration/test_adapters_flytekit.py`` runs this file there, so ``make test`` covers it.
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
from flyteidl.admin.agent_pb2 import GetTaskLogsResponse, GetTaskLogsResponseBody, GetTaskMetricsResponse
from flyteidl.core.execution_pb2 import TaskExecution, TaskLog
from flyteidl.core.metrics_pb2 import ExecutionMetricResult
from flytekit.extend.backend import base_connector as fk
from flytekit.extend.backend.utils import get_connector_secret
from flytekit.models.literals import LiteralMap
from flytekit.models.task import TaskTemplate
from flytekit.sensor.file_sensor import FileSensor
from flytekit.sensor.sensor_engine import SensorEngine
from google.protobuf.struct_pb2 import Struct

from connector_nb import Session
from connector_nb.adapters.flytekit import FlytekitAsyncAdapter, FlytekitSyncAdapter
from connector_nb.errors import ConnectorCallError
from connector_nb.registry import ConnectorRegistry
from connector_nb.testing import fast_policy, phases, wait_until

SECRET = "fk-secret-7f3a91"
FILE_SENSOR = {"sensor_module": "flytekit.sensor.file_sensor", "sensor_name": "FileSensor"}


@dataclass
class JobMeta(fk.ResourceMeta):
    job_id: str
    polls_left: int = 0


class DictJobConnector(fk.AsyncConnectorBase):
    """flytekit style: sync ``def`` methods, dict outputs, log links, metrics, logs, a secret."""

    name = "Dict Job"
    seen: dict[str, object] = {}

    def __init__(self) -> None:
        super().__init__(task_type_name="dict_job", metadata_type=JobMeta)

    def create(self, task_template: TaskTemplate, output_prefix: str, inputs: LiteralMap | None = None,
               **kwargs) -> JobMeta:
        assert isinstance(task_template, TaskTemplate) and isinstance(inputs, LiteralMap)  # flytekit models
        self.seen.update(secret=get_connector_secret("api_key"), thread=threading.get_ident(),
                         execution=kwargs["task_execution_metadata"].task_execution_id.node_execution_id.execution_id.name)
        threading.local_state = getattr(threading, "local_state", threading.local())
        threading.local_state.callers = ["create"]  # thread-local state, as Airflow's ExecutorSafeguard keeps
        name = inputs.literals["name"].scalar.primitive.string_value
        if name == "explode":
            raise RuntimeError(f"the service rejected key {get_connector_secret('api_key')}")
        return JobMeta(job_id=f"job-{name}", polls_left=int(inputs.literals["polls"].scalar.primitive.integer))

    def get(self, resource_meta: JobMeta, **kwargs) -> fk.Resource:
        self.seen["get_thread"] = threading.get_ident()
        self.seen["get_local"] = list(getattr(threading.local_state, "callers", ["<none on this thread>"]))
        if resource_meta.job_id == "job-broken":
            raise ValueError("broken job: their get() failed")
        link = TaskLog(name="console", uri=f"https://console.example/{resource_meta.job_id}")
        # The metadata is stateless (bytes), so count polls on the connector object.
        count = self.seen.setdefault(resource_meta.job_id, 0) + 1
        self.seen[resource_meta.job_id] = count
        if count <= resource_meta.polls_left:
            return fk.Resource(phase=TaskExecution.RUNNING, message=f"poll {count}", log_links=[link])
        return fk.Resource(phase=TaskExecution.SUCCEEDED, message="done", log_links=[link],
                           outputs={"info": {"job": resource_meta.job_id, "sizes": [1, 2]}, "count": count},
                           custom_info={"cluster": "c1"})

    def delete(self, resource_meta: JobMeta, **kwargs) -> None:
        self.seen["deleted"] = resource_meta.job_id

    def get_metrics(self, resource_meta: JobMeta, **kwargs) -> GetTaskMetricsResponse:
        data = Struct()
        data.update({"result": [{"metric": {"job": resource_meta.job_id}, "values": [[1700000000, "0.5"]]}]})
        return GetTaskMetricsResponse(results=[ExecutionMetricResult(metric="cpu", data=data)])

    def get_logs(self, resource_meta: JobMeta, **kwargs) -> GetTaskLogsResponse:
        return GetTaskLogsResponse(body=GetTaskLogsResponseBody(results=[f"{resource_meta.job_id} started"]))


class StreamingJobConnector(DictJobConnector):
    """The same job with ``async def`` metrics and an async-generator ``get_logs`` (paged)."""

    def __init__(self) -> None:
        fk.AsyncConnectorBase.__init__(self, task_type_name="streaming_job", metadata_type=JobMeta)

    async def get_metrics(self, resource_meta: JobMeta, **kwargs) -> GetTaskMetricsResponse:
        return DictJobConnector.get_metrics(self, resource_meta)

    async def get_logs(self, resource_meta: JobMeta, **kwargs):
        for page in range(3):
            yield GetTaskLogsResponse(body=GetTaskLogsResponseBody(results=[f"page {page}"]))


class EchoSyncConnector(fk.SyncConnectorBase):
    name = "Echo Sync"

    def __init__(self) -> None:
        super().__init__(task_type_name="echo_sync")
        self.calls = 0

    async def do(self, task_template: TaskTemplate, output_prefix: str, inputs: LiteralMap | None = None,
                 **kwargs) -> fk.Resource:
        self.calls += 1
        text = inputs.literals["text"].scalar.primitive.string_value
        if text == "fail":
            return fk.Resource(phase=TaskExecution.FAILED, message="do() said no")
        return fk.Resource(phase=TaskExecution.SUCCEEDED, message="echoed",
                           outputs={"echo": text.upper(), "meta": {"len": len(text)}})


@pytest.fixture
def session():
    s = Session(registry=ConnectorRegistry(), journal=False, poll=fast_policy())
    yield s
    s.close()


def test_register_takes_flytekit_connectors_as_they_are(session):
    sensor = session.registry.register(SensorEngine())
    sync = session.registry.register(EchoSyncConnector)  # a class with no arguments is instantiated
    assert isinstance(sensor, FlytekitAsyncAdapter) and isinstance(sync, FlytekitSyncAdapter)
    assert (sensor.task_type_name, sensor.name, sync.is_sync, sensor.is_sync) == ("sensor", "Sensor", True, False)
    assert not sensor.supports("get_metrics") and not sensor.supports("get_logs")
    assert {c.task_type for c in session.connectors()} == {"sensor", "echo_sync"}


def test_file_sensor_by_task_object_runs_until_the_file_appears(session, tmp_path):
    session.registry.register(SensorEngine())
    path = tmp_path / "arrives.txt"
    run = session.launch(FileSensor(name="wait_for_file"), path=str(path))
    # flytekit serialized the template: the sensor's interface and its custom (which sensor to poke).
    assert run.template.type == "sensor" and list(run.template.interface.inputs.variables) == ["path"]
    assert run.template.custom["sensor_name"] == "FileSensor"
    wait_until(lambda: run.phase == "RUNNING" and run.get_calls >= 3, what="the sensor to poke a few times")
    assert run.live
    path.write_text("here")
    run.wait(timeout=30)
    assert phases(run.transitions) == ["QUEUED", "RUNNING", "SUCCEEDED"]


def test_file_sensor_by_name_and_cancel(session, tmp_path):
    session.registry.register(SensorEngine())
    run = session.launch("sensor", custom=FILE_SENSOR, path=str(tmp_path / "never.txt"))
    wait_until(lambda: run.get_calls >= 2, what="a few polls")
    assert run.phase == "RUNNING"
    run.cancel()
    assert run.phase == "ABORTED" and not run.live
    calls = run.get_calls
    (tmp_path / "never.txt").write_text("too late")
    assert run.get_calls == calls and run.phase == "ABORTED"


def test_session_takes_flytekit_registry_with_its_builtin_connectors(tmp_path):
    import flytekit.extras.webhook  # registers the webhook connector in flytekit's registry
    import flytekit.sensor.sensor_engine  # noqa: F401

    with Session(registry=fk.ConnectorRegistry, journal=False, poll=fast_policy()) as s:
        infos = {c.task_type: c for c in s.connectors()}
        assert {"sensor", "webhook"} <= set(infos)
        run = s.launch(FileSensor(name="from_their_registry"), path=str(tmp_path))  # a folder that exists
        run.wait(timeout=30)
        assert run.phase == "SUCCEEDED"
    built = ConnectorRegistry.from_framework("flytekit")
    assert isinstance(built.get_connector("webhook"), FlytekitSyncAdapter)
    with Session(registry="flytekit", journal=False) as by_name:  # the same, by framework name
        assert {"sensor", "webhook"} <= {c.task_type for c in by_name.connectors()}


def test_dict_outputs_links_metrics_logs_and_secrets(session):
    session.registry.register(DictJobConnector(), secrets={"api_key": SECRET})
    run = session.launch("dict_job", name="a", polls=2)
    run.wait(timeout=30)
    assert phases(run.transitions) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert run.outputs == {"info": {"job": "job-a", "sizes": [1, 2]}, "count": 3}
    assert [(link.name, link.uri) for link in run.log_links] == [("console", "https://console.example/job-a")]
    assert run.resource.custom_info == {"cluster": "c1"}
    assert DictJobConnector.seen["secret"] == SECRET  # where flytekit's get_connector_secret looks
    assert DictJobConnector.seen["execution"] == run.run_id
    assert list(run.metrics()["value"]) == [0.5]
    assert str(run.logs()) == "job-a started"
    assert SECRET not in repr(session.registry.get_connector("dict_job"))


def test_step_mode_and_transitions_look_the_same(session):
    session.registry.register(DictJobConnector())
    run = session.launch("dict_job", name="s", polls=1, autopoll=False)
    assert run.refresh().phase == "RUNNING"
    assert run.refresh().phase == "SUCCEEDED"
    assert phases(run.transitions) == ["QUEUED", "RUNNING", "SUCCEEDED"] and run.get_calls == 2


def test_errors_are_masked_and_debug_lands_in_their_code(session):
    session.registry.register(DictJobConnector(), secrets={"api_key": SECRET})
    with pytest.raises(ConnectorCallError) as caught:
        session.launch("dict_job", name="explode", polls=0)
    assert SECRET not in str(caught.value) and "rejected key" in str(caught.value)
    run = session.launch("dict_job", name="broken", polls=0)
    wait_until(lambda: run.error is not None, what="the failing get to be recorded")
    original = run.error.original
    assert isinstance(original, ValueError)
    last = traceback.extract_tb(original.__traceback__)[-1]
    assert Path(last.filename).name == "flytekit_cases.py" and last.name == "get"  # their frame, for pdb
    run.cancel()


def test_sync_connector_goes_straight_to_its_final_phase(session):
    connector = EchoSyncConnector()
    session.registry.register(connector)
    run = session.launch("echo_sync", text="hi")
    assert connector.calls == 1  # do() ran inside launch
    run.wait(timeout=30)
    assert phases(run.transitions) == ["QUEUED", "SUCCEEDED"]
    assert run.outputs == {"echo": "HI", "meta": {"len": 2}} and run.message == "echoed"
    failed = session.launch("echo_sync", text="fail")
    failed.wait(timeout=30)
    assert failed.phase == "FAILED" and failed.message == "do() said no" and connector.calls == 2


def test_thread_affinity_pins_sync_methods_to_one_thread(session):
    DictJobConnector.seen.clear()
    session.registry.register(DictJobConnector(), thread_affinity=True)
    run = session.launch("dict_job", name="t", polls=3)
    run.wait(timeout=30)
    assert DictJobConnector.seen["get_thread"] == DictJobConnector.seen["thread"]
    assert DictJobConnector.seen["get_local"] == ["create"]  # thread-local state survived between calls


@pytest.fixture
def hook_server():
    """A webhook receiver on 127.0.0.1 that records each POST body; stopped by the test."""
    import http.server
    import json

    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"thanks")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_flytekit_webhook_connector_sync_by_task_object(session, hook_server):
    from flytekit.extras.webhook import WebhookConnector, WebhookTask

    url, received = hook_server
    session.registry.register(WebhookConnector())
    task = WebhookTask(name="notify", url=url, method="POST", data={"msg": "hello {inputs.who}"},
                       dynamic_inputs={"who": str})
    run = session.launch(task, who="nb")
    assert received == [{"msg": "hello nb"}]  # do() ran during launch
    run.wait(timeout=30)
    assert phases(run.transitions) == ["QUEUED", "SUCCEEDED"]
    assert run.outputs["info"]["status_code"] == 200 and run.outputs["info"]["response_data"] == "thanks"


def test_import_connector_nb_leaves_flytekit_unloaded_even_when_installed():
    import subprocess
    import sys

    code = ("import sys, connector_nb, connector_nb.registry, connector_nb.template; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flytekit', 'flyte')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_register_module_takes_what_a_flytekit_module_registered_with_flytekit(session, monkeypatch, tmp_path):
    import importlib
    import sys

    monkeypatch.setenv("INTEROP_MARKER_DIR", str(tmp_path))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    module = importlib.import_module("flytekit_connector_module")  # registers with flytekit's registry only
    found = session.registry.register_module(module)
    assert sorted(c.task_type_name for c in found) == ["fast_get", "interop_sleep"]
    run = session.launch("interop_sleep", seconds=0.0)
    run.wait(timeout=30)
    assert run.phase == "SUCCEEDED" and set(run.outputs) == {"job_id"}
    sys.modules.pop("flytekit_connector_module", None)


def test_flytekit_connector_served_over_grpc_by_our_server(tmp_path):
    registry = ConnectorRegistry()
    registry.register(SensorEngine())
    registry.register(EchoSyncConnector())
    with Session(registry=registry, journal=False) as local:
        handle = local.serve(port=0)  # 127.0.0.1 only
        try:
            with Session(handle.target, journal=False, poll=fast_policy()) as remote:
                assert {"sensor", "echo_sync"} <= {c.task_type for c in remote.connectors()}
                path = tmp_path / "remote.txt"
                run = remote.launch("sensor", custom=FILE_SENSOR, path=str(path))
                wait_until(lambda: run.get_calls >= 2, what="remote polls")
                assert run.phase == "RUNNING"
                path.write_text("now")
                run.wait(timeout=30)
                assert phases(run.transitions) == ["QUEUED", "RUNNING", "SUCCEEDED"]
                echoed = remote.launch("echo_sync", text="grpc")
                echoed.wait(timeout=30)
                assert echoed.outputs == {"echo": "GRPC", "meta": {"len": 4}}
                stuck = remote.launch("sensor", custom=FILE_SENSOR, path=str(tmp_path / "never"))
                stuck.cancel()
                assert stuck.phase == "ABORTED"
        finally:
            handle.stop()


def test_async_metrics_and_streamed_logs(session):
    session.registry.register(StreamingJobConnector())
    run = session.launch("streaming_job", name="g", polls=0)
    run.wait(timeout=30)
    assert run.logs().lines == ["page 0", "page 1", "page 2"]
    assert list(run.metrics()["value"]) == [0.5]


def test_the_conformance_check_judges_flytekits_file_sensor_in_process_and_through_the_wire(tmp_path):
    from connector_nb.testing import check_connector

    ready = tmp_path / "ready.txt"
    ready.write_text("x")
    report = check_connector(SensorEngine(), {"path": str(ready)}, FILE_SENSOR, wire=True, timeout=60)
    failed = [r for r in report.results if r.status == "fail"]
    assert not failed, report.text()
    assert len(report.results) == 24  # every check, in-process and through gRPC
