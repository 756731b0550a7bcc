"""The server's error contract and bounds: malformed requests, huge values, slow and loop-hogging connectors."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from flyteidl.admin import agent_pb2
from flyteidl.core import metrics_pb2
from flyteidl.service import agent_pb2_grpc
from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from connector_nb import _status
from connector_nb.connector import AsyncConnector, Resource, ResourceMeta
from connector_nb.errors import (
    CallTimeoutError,
    ConnectorCallError,
    InputError,
    LimitExceededError,
    MetadataError,
    ServiceUnavailableError,
    UnknownTaskTypeError,
)
from connector_nb.registry import ConnectorRegistry
from connector_nb.server import ServeLimits, serve
from connector_nb.testing import wait_until

SERVICE = "/flyteidl.service.AsyncAgentService/"


@dataclass
class JobMeta(ResourceMeta):
    job: str = ""
    size: int = 0


class Bounded(AsyncConnector):
    """Returns as much as it is asked for: the server must bound it."""

    name = "Bounded"
    task_type_name = "bounded"
    metadata_type = JobMeta
    input_types = {"x": int}
    output_types = {"blob": str}

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = threading.Event()
        self.hogging = threading.Event()
        self.release = threading.Event()

    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None, **kw: Any) -> JobMeta:
        return JobMeta(job="j", size=int((inputs or {}).get("x", 0)))

    async def get(self, resource_meta: JobMeta, **kw: Any) -> Resource:
        if resource_meta.job == "slow":
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if resource_meta.job == "hog":  # a buggy async connector that blocks its loop
            self.hogging.set()
            self.release.wait(60)
        return Resource(phase="SUCCEEDED", outputs={"blob": "x" * resource_meta.size})

    async def delete(self, resource_meta: JobMeta, **kw: Any) -> None:
        return None

    async def get_logs(self, resource_meta: JobMeta, **kw: Any) -> Any:
        for start in range(0, resource_meta.size, 1000):
            yield agent_pb2.GetTaskLogsResponse(body=agent_pb2.GetTaskLogsResponseBody(
                results=[f"line {i}" for i in range(start, min(start + 1000, resource_meta.size))]))

    async def get_metrics(self, resource_meta: JobMeta, **kw: Any) -> Any:
        data = {"result": [{"metric": {}, "values": [[i, "1"] for i in range(resource_meta.size)]}] * 2}
        struct = json_format.ParseDict(data, struct_pb2.Struct())
        return agent_pb2.GetTaskMetricsResponse(results=[metrics_pb2.ExecutionMetricResult(metric="m", data=struct)])


LIMITS = ServeLimits(max_message_bytes=256 * 1024, max_meta_bytes=1024, max_log_lines=2500, max_metric_samples=300,
                     call_timeout=0.5)


@pytest.fixture(scope="module")
def connector() -> Bounded:
    return Bounded()


@pytest.fixture(scope="module")
def handle(connector):
    with serve(ConnectorRegistry([connector]), port=0, block=False, limits=LIMITS) as h:
        yield h


@pytest.fixture
def channel(handle):
    with grpc.insecure_channel(f"127.0.0.1:{handle.port}", options=[
        ("grpc.max_send_message_length", 8 << 20), ("grpc.max_receive_message_length", 8 << 20)]) as ch:
        yield ch


@pytest.fixture
def stub(channel):
    return agent_pb2_grpc.AsyncAgentServiceStub(channel)


def _category(name: str = "bounded") -> agent_pb2.TaskCategory:
    return agent_pb2.TaskCategory(name=name)


def _code(call: Any, *args: Any, **kwargs: Any) -> tuple[grpc.StatusCode, str]:
    try:
        result = call(*args, timeout=10, **kwargs)
        if hasattr(result, "__iter__") and not hasattr(result, "ByteSize"):
            list(result)
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


def test_status_table_round_trips():
    assert _status.code_name(UnknownTaskTypeError("t", 0, [])) == "NOT_FOUND"
    assert _status.code_name(MetadataError("x")) == _status.code_name(InputError("x")) == "INVALID_ARGUMENT"
    assert _status.code_name(CallTimeoutError("get", "t", 1.0)) == "DEADLINE_EXCEEDED"
    assert _status.code_name(ConnectorCallError("get", "t", ValueError("v"))) == "INTERNAL"
    assert _status.code_name(LimitExceededError("big")) == "RESOURCE_EXHAUSTED"
    assert _status.code_name(KeyError("bug")) == "INTERNAL"
    for cls, code in _status.ERROR_CODES:
        if issubclass(cls, Exception) and code in _status.CODE_ERRORS:
            assert _status.code_name(_status.error_class(code).__new__(_status.error_class(code))) == code
    assert _status.error_class("UNAVAILABLE") is ServiceUnavailableError
    assert _status.detail(ConnectorCallError("get", "t", ValueError("v"))) == "ValueError: v"


@pytest.mark.parametrize("method", ["CreateTask", "GetTask", "DeleteTask", "GetTaskMetrics", "GetTaskLogs"])
def test_undecodable_requests_are_invalid_argument(channel, method):
    call = (channel.unary_stream if method == "GetTaskLogs" else channel.unary_unary)(SERVICE + method)
    code, details = _code(call, b"\xff\xff\xff\x01garbage")
    assert code is grpc.StatusCode.INVALID_ARGUMENT and details.startswith("request: not a valid message")


@pytest.mark.parametrize(("meta", "field"), [
    (b"[" * 100_000, "resource_meta"),  # deep JSON: RecursionError inside json
    (b"x" * 2000, "resource_meta: 2000 bytes, more than the limit of 1024"),
    (b"\xff\xfe", "malformed JobMeta bytes"),
])
def test_bad_resource_meta_is_invalid_argument_naming_the_field(stub, meta, field):
    for call, request in [(stub.GetTask, agent_pb2.GetTaskRequest), (stub.DeleteTask, agent_pb2.DeleteTaskRequest),
                          (stub.GetTaskLogs, agent_pb2.GetTaskLogsRequest),
                          (stub.GetTaskMetrics, agent_pb2.GetTaskMetricsRequest)]:
        code, details = _code(call, request(task_category=_category(), resource_meta=meta))
        assert code is grpc.StatusCode.INVALID_ARGUMENT, (call, details)
        assert field in details or ("RecursionError" in details and "resource_meta" in details) or \
            "malformed JobMeta" in details, details


def test_malformed_fields_name_the_field(stub):
    assert _code(stub.GetTask, agent_pb2.GetTaskRequest(resource_meta=b"{}"))[1].startswith("task_category.name")
    code, details = _code(stub.GetTask, agent_pb2.GetTaskRequest(task_type="t" * 5000, resource_meta=b"{}"))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and details.startswith("task_type: 5000 characters")
    code, details = _code(stub.CreateTask, agent_pb2.CreateTaskRequest())
    assert code is grpc.StatusCode.INVALID_ARGUMENT and details.startswith("template.type: required")
    code, details = _code(stub.GetTask, agent_pb2.GetTaskRequest(task_category=_category("nope"), resource_meta=b"{}"))
    assert code is grpc.StatusCode.NOT_FOUND and "'nope'" in details
    meta = JobMeta(job="j").encode()
    for field, step in [("step: must be positive", duration_pb2.Duration(seconds=0)),
                        ("step: 1000000 samples", duration_pb2.Duration(seconds=1))]:
        request = agent_pb2.GetTaskMetricsRequest(task_category=_category(), resource_meta=meta, step=step,
                                                  start_time=timestamp_pb2.Timestamp(seconds=0),
                                                  end_time=timestamp_pb2.Timestamp(seconds=1_000_000))
        code, details = _code(stub.GetTaskMetrics, request)
        assert code is grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field), details


def test_oversized_request_and_response_are_resource_exhausted(stub):
    code, _ = _code(stub.GetTask, agent_pb2.GetTaskRequest(task_category=_category(), output_prefix="p" * (1 << 20)))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    huge = JobMeta(job="j", size=300 * 1024).encode()  # the connector's output exceeds the response bound
    code, details = _code(stub.GetTask, agent_pb2.GetTaskRequest(task_category=_category(), resource_meta=huge))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED and "more than the service's limit" in details


def test_log_lines_and_metric_samples_are_bounded(stub):
    meta = JobMeta(job="j", size=1_000_000).encode()  # a forged size: the connector would make a million lines
    parts = list(stub.GetTaskLogs(agent_pb2.GetTaskLogsRequest(task_category=_category(), resource_meta=meta,
                                                               lines=10**9), timeout=30))
    lines = [line for part in parts for line in part.body.results]
    assert len(lines) == LIMITS.max_log_lines and lines[-1] == f"line {LIMITS.max_log_lines - 1}"
    meta = JobMeta(job="j", size=1000).encode()
    response = stub.GetTaskMetrics(agent_pb2.GetTaskMetricsRequest(task_category=_category(), resource_meta=meta),
                                   timeout=10)
    series = json_format.MessageToDict(response.results[0].data)["result"]
    assert [len(s["values"]) for s in series] == [300, 0]


def test_slow_call_gets_deadline_exceeded_and_is_cancelled(stub, connector):
    meta = JobMeta(job="slow").encode()
    code, details = _code(stub.GetTask, agent_pb2.GetTaskRequest(task_category=_category(), resource_meta=meta))
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED and "did not return within 0.5 s" in details
    wait_until(connector.cancelled.is_set, what="the slow get() to be cancelled")


def test_a_loop_hogging_connector_does_not_starve_health(stub, channel, connector):
    meta = JobMeta(job="hog").encode()
    with ThreadPoolExecutor(1) as pool:
        hogged = pool.submit(_code, stub.GetTask, agent_pb2.GetTaskRequest(task_category=_category(),
                                                                           resource_meta=meta))
        try:
            wait_until(connector.hogging.is_set, what="the connector to block its loop")
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            agents = agent_pb2_grpc.AgentMetadataServiceStub(channel).ListAgents(agent_pb2.ListAgentsRequest(),
                                                                                 timeout=10)
            assert [a.name for a in agents.agents] == ["Bounded"]
        finally:
            connector.release.set()
        assert hogged.result(timeout=30)[0] in (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_wrong_input_types_are_invalid_argument(stub):
    # the caller's fault; only a connector raising is INTERNAL (see test_grpc)
    template = Bounded().task_template()
    from connector_nb.literals import to_literal_map

    inputs = to_literal_map({"x": "not an int"}, {"x": str})
    code, details = _code(stub.CreateTask, agent_pb2.CreateTaskRequest(template=template, inputs=inputs))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "x" in details


def test_stop_ends_both_loop_threads_and_is_idempotent():
    handle = serve(ConnectorRegistry([Bounded()]), port=0, block=False)
    assert handle.running and all(engine.running for engine in handle._engines)
    handle.stop()
    handle.stop()
    assert not handle.running and not any(engine.running for engine in handle._engines)
    assert handle.wait(timeout=0) and "stopped" in repr(handle)
