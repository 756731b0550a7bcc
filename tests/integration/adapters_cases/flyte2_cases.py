"""Flyte 2 connectors in-process, unmodified. Runs only in ``.venv-flyte2-nb`` (connector_nb + flyte);
``tests/integration/test_adapters_flyte2.py`` runs this file there, so ``make test`` covers it.
"""

from __future__ import annotations

import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from flyte.connectors import AsyncConnector, Resource, ResourceMeta
from flyte.connectors import ConnectorRegistry as TheirRegistry
from flyteidl2.connector.connector_pb2 import (
    GetTaskLogsResponse,
    GetTaskLogsResponseBody,
    GetTaskMetricsResponse,
    TaskExecutionMetadata,
)
from flyteidl2.core import tasks_pb2 as tasks2
from flyteidl2.core.execution_pb2 import TaskExecution, TaskLog
from flyteidl2.core.metrics_pb2 import ExecutionMetricResult
from flyteidl2.logs.dataplane.payload_pb2 import LogLine
from google.protobuf.struct_pb2 import Struct

from connector_nb import Session
from connector_nb.adapters.flyte2 import Flyte2Adapter
from connector_nb.errors import ConnectorCallError
from connector_nb.registry import ConnectorRegistry
from connector_nb.testing import fast_policy, phases, wait_until

SECRET = "f2-secret-c0ffee"
CALLS: list[tuple] = []


@dataclass
class F2Meta(ResourceMeta):
    job_id: str
    deadline: float


class F2Connector(AsyncConnector[F2Meta]):
    name = "Flyte2 Test Connector"
    task_type_name = "f2_job"
    metadata_type = F2Meta

    async def create(self, task_template, output_prefix, inputs=None, task_execution_metadata=None, **kwargs):
        assert isinstance(task_template, tasks2.TaskTemplate)  # flyteidl2, as Flyte 2's service gives it
        assert isinstance(task_execution_metadata, TaskExecutionMetadata)
        execution = task_execution_metadata.task_execution_id.node_execution_id.execution_id.name
        CALLS.append(("create", dict(inputs), kwargs, execution))
        if inputs.get("explode"):
            raise RuntimeError(f"the service rejected key {kwargs.get('api_token')}")
        return F2Meta(job_id=uuid.uuid4().hex[:8], deadline=time.monotonic() + float(inputs.get("seconds", 0)))

    async def get(self, resource_meta: F2Meta, **kwargs) -> Resource:
        CALLS.append(("get", resource_meta.job_id, kwargs))
        if resource_meta.deadline < 0:
            raise ValueError("broken job: their get() failed")
        link = TaskLog(name="dashboard", uri=f"https://dash.example/{resource_meta.job_id}", icon_uri="x.svg")
        if time.monotonic() < resource_meta.deadline:
            return Resource(phase=TaskExecution.RUNNING, message="working", log_links=[link])
        return Resource(phase=TaskExecution.SUCCEEDED, message="done", log_links=[link],
                        outputs={"job_id": resource_meta.job_id, "info": {"rows": 3, "tags": ["a"]}},
                        custom_info={"region": "r1"})

    async def delete(self, resource_meta: F2Meta, **kwargs):
        CALLS.append(("delete", resource_meta.job_id, kwargs))

    async def get_metrics(self, resource_meta: F2Meta, **kwargs) -> GetTaskMetricsResponse:
        data = Struct()
        data.update({"result": [{"metric": {}, "values": [[1700000000, "0.25"], [1700000001, "0.75"]]}]})
        return GetTaskMetricsResponse(results=[ExecutionMetricResult(metric="cpu", data=data)])

    async def get_logs(self, resource_meta: F2Meta, **kwargs):
        for n in range(2):
            yield GetTaskLogsResponse(body=GetTaskLogsResponseBody(lines=[LogLine(message=f"line {n}")]))


@pytest.fixture
def session():
    CALLS.clear()
    registry = ConnectorRegistry()
    registry.register(F2Connector(), secrets={"api_token": SECRET})
    s = Session(registry=registry, journal=False, poll=fast_policy())
    yield s
    s.close()


def test_flyte2_connector_runs_with_its_own_types(session):
    adapter = session.registry.get_connector("f2_job")
    assert isinstance(adapter, Flyte2Adapter) and adapter.supports("get_logs") and adapter.supports("get_metrics")
    run = session.launch("f2_job", seconds=0.3, label="x")
    run.wait(timeout=30)
    assert phases(run.transitions) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert run.outputs == {"job_id": run.outputs["job_id"], "info": {"rows": 3, "tags": ["a"]}}
    job_id = run.outputs["job_id"]
    assert [(link.name, link.uri) for link in run.log_links] == [("dashboard", f"https://dash.example/{job_id}")]
    assert run.resource.custom_info == {"region": "r1"}
    create = CALLS[0]
    assert create == ("create", {"seconds": 0.3, "label": "x"}, {"api_token": SECRET}, run.run_id)
    assert all(c[2] == {"api_token": SECRET} for c in CALLS if c[0] == "get")  # secrets as keywords, every call


def test_cancel_calls_their_delete_with_the_secrets(session):
    run = session.launch("f2_job", seconds=600)
    wait_until(lambda: run.phase == "RUNNING", what="RUNNING")
    run.cancel()
    assert run.phase == "ABORTED"
    job_id = next(c[1] for c in CALLS if c[0] == "get")
    assert [c for c in CALLS if c[0] == "delete"] == [("delete", job_id, {"api_token": SECRET})]


def test_metrics_and_logs_convert_from_flyteidl2(session):
    run = session.launch("f2_job", seconds=0)
    run.wait(timeout=30)
    assert list(run.metrics()["value"]) == [0.25, 0.75]
    logs = run.logs()
    assert logs.lines == ["line 0", "line 1"]


def test_step_mode(session):
    run = session.launch("f2_job", seconds=0.2, autopoll=False)
    assert run.refresh().phase == "RUNNING"
    wait_until(lambda: run.refresh().phase == "SUCCEEDED", interval=0.05, what="SUCCEEDED")
    assert phases(run.transitions)[:2] == ["QUEUED", "RUNNING"] and run.phase == "SUCCEEDED"


def test_errors_masked_and_debug_frame_is_theirs(session):
    with pytest.raises(ConnectorCallError) as caught:
        session.launch("f2_job", explode=True)
    assert SECRET not in str(caught.value) and "rejected key" in str(caught.value)
    run = session.launch("f2_job", seconds=-1e12)  # a deadline below zero makes their get() raise
    wait_until(lambda: run.error is not None, what="the failing get")
    last = traceback.extract_tb(run.error.original.__traceback__)[-1]
    assert Path(last.filename).name == "flyte2_cases.py" and last.name == "get"
    run.cancel()


def test_session_takes_flyte2_registry():
    TheirRegistry.register(F2Connector(), override=True)
    with Session(registry=TheirRegistry, journal=False, poll=fast_policy()) as s:
        assert "f2_job" in {c.task_type for c in s.connectors()}
        run = s.launch("f2_job", seconds=0)
        run.wait(timeout=30)
        assert run.phase == "SUCCEEDED" and CALLS[-1][0] == "get" and CALLS[-1][2] == {}  # no secrets given
    assert "f2_job" in ConnectorRegistry.from_framework("flyte")
    by_class = ConnectorRegistry([F2Connector])  # a connector class with no arguments is instantiated
    assert isinstance(by_class.get_connector("f2_job").wrapped, F2Connector)


def _sleep_task(name: str, in_environment: bool = True):
    import inspect

    import flyte
    from flyte.connectors import AsyncConnectorExecutorMixin
    from flyte.extend import TaskTemplate
    from flyte.models import NativeInterface

    class F2JobTask(AsyncConnectorExecutorMixin, TaskTemplate):
        def custom_config(self, sctx):
            return {"queue": "fast"}

    interface = NativeInterface.from_types(inputs={"seconds": (float, inspect.Parameter.empty)},
                                           outputs={"job_id": str})
    task = F2JobTask(name=name, interface=interface, task_type="f2_job", image=None)
    if in_environment:
        flyte.TaskEnvironment.from_task(f"{name}_env", task)
    return task


def test_launch_a_flyte2_task_object(session):
    from connector_nb.errors import InputError

    run = session.launch(_sleep_task("f2_task"), seconds=0)
    run.wait(timeout=30)
    assert run.phase == "SUCCEEDED" and run.template.id.name == "f2_task"
    assert dict(run.template.custom) == {"queue": "fast"}  # Flyte 2 serialized the task's custom config
    assert list(run.template.interface.inputs.variables) == ["seconds"]
    with pytest.raises(InputError, match="no parent environment"):
        session.launch(_sleep_task("orphan", in_environment=False), seconds=0)


def test_the_conformance_check_judges_a_flyte2_connector_in_process_and_through_the_wire():
    from connector_nb.testing import check_connector

    report = check_connector(F2Connector(), {"seconds": 0.2}, wire=True, timeout=60)
    statuses = {(r.check, r.via): r.status for r in report.results}
    failed = {k: v for k, v in statuses.items() if v == "fail"}
    assert not failed, report.text()
    assert statuses[("reaches_terminal", "grpc")] == "pass" and statuses[("logs", "in-process")] == "pass"
