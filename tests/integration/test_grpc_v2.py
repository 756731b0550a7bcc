"""Both wire protocols over real loopback gRPC: our client on flyteidl2 paths, our server under both names,
v2's Connection (secrets/configs) end to end, protocol auto-detection, the bearer token and auth errors."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import pytest
from flyteidl.admin import agent_pb2
from flyteidl.core import execution_pb2, metrics_pb2
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from connector_nb._v2 import V1_SERVICES, V2_SERVICES, connection_bytes, read_connection
from connector_nb.connector import AsyncConnector, Resource, ResourceMeta
from connector_nb.errors import AuthError, CallTimeoutError, ConnectorCallError, NotSupportedError
from connector_nb.registry import ConnectorRegistry
from connector_nb.secrets import MASK
from connector_nb.server import serve
from connector_nb.session import Session
from connector_nb.template import task_template
from connector_nb.transports.base import TaskCategory
from connector_nb.transports.grpc import GrpcTransport

SECRET = "tok-5ecret-9f31"
#: (method, api_token, region) of every call the Keyed connector received.
SEEN: list[tuple[str, Any, Any]] = []


@dataclass
class KeyedMeta(ResourceMeta):
    job_id: str
    deadline: float


class Keyed(AsyncConnector):
    """Takes v2 Connection values as keyword arguments, as Flyte 2 connectors do."""

    name = "Keyed"
    task_type_name = "keyed"
    metadata_type = KeyedMeta
    input_types = {"seconds": float}
    output_types = {"job": str}
    input_defaults = {"seconds": 0.0}

    async def create(self, task_template, output_prefix, inputs=None, api_token=None, region=None, **kwargs):
        SEEN.append(("create", api_token, region))
        seconds = float((inputs or {}).get("seconds", 0.0))
        if seconds < 0:
            raise RuntimeError(f"service refused key {api_token} for {seconds}")
        return KeyedMeta(uuid.uuid4().hex[:8], time.time() + seconds)

    async def get(self, resource_meta: KeyedMeta, api_token=None, region=None, **kwargs) -> Resource:
        SEEN.append(("get", api_token, region))
        if time.time() < resource_meta.deadline:
            return Resource(phase="RUNNING", message="working")
        return Resource(phase="SUCCEEDED", message="done", outputs={"job": resource_meta.job_id})

    async def delete(self, resource_meta: KeyedMeta, api_token=None, **kwargs) -> None:
        SEEN.append(("delete", api_token, resource_meta.job_id))

    async def get_metrics(self, resource_meta: KeyedMeta, **kwargs) -> agent_pb2.GetTaskMetricsResponse:
        data = struct_pb2.Struct()
        data.update({"result": [{"metric": {"job": resource_meta.job_id}, "values": [[1700000000, "2.5"]]}]})
        return agent_pb2.GetTaskMetricsResponse(results=[metrics_pb2.ExecutionMetricResult(metric="mem", data=data)])

    async def get_logs(self, resource_meta: KeyedMeta, **kwargs):
        yield agent_pb2.GetTaskLogsResponse(body=agent_pb2.GetTaskLogsResponseBody(results=["first"]))
        yield agent_pb2.GetTaskLogsResponse(body=agent_pb2.GetTaskLogsResponseBody(results=["second"]))


class Hangs(AsyncConnector):
    """``get`` never returns: the service is up, the connector is stuck."""

    name = "Hangs"
    task_type_name = "hangs"
    metadata_type = KeyedMeta

    async def create(self, task_template, output_prefix, inputs=None, **kwargs):
        return KeyedMeta("h", 0.0)

    async def get(self, resource_meta, **kwargs) -> Resource:
        await asyncio.Event().wait()  # never set: the call only ends when the client's deadline cancels it
        raise AssertionError("unreachable")

    async def delete(self, resource_meta, **kwargs) -> None:
        pass


class Paths(grpc.aio.ServerInterceptor):
    """Records each call's path and metadata; refuses the paths in ``refuse`` (UNIMPLEMENTED, as a v2-only
    service does) and, with ``token`` set, calls without ``authorization: Bearer <token>`` (UNAUTHENTICATED)."""

    def __init__(self, refuse: tuple[str, ...] = (), token: str | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.refuse, self.token = refuse, token

    async def intercept_service(self, continuation, details):
        metadata = dict(details.invocation_metadata or ())
        self.calls.append((details.method, metadata))
        if details.method.split("/")[1] in self.refuse:
            return None
        if self.token is not None and not details.method.startswith("/grpc.health") \
                and metadata.get("authorization") != f"Bearer {self.token}":
            async def deny(request, context):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
            return grpc.unary_unary_rpc_method_handler(deny)
        return await continuation(details)

    def services(self) -> set[str]:
        return {method.split("/")[1] for method, _ in self.calls if not method.startswith("/grpc.health")}


def _serve(interceptor: Paths):
    return serve(ConnectorRegistry([Keyed, Hangs]), port=0, host="127.0.0.1", block=False, interceptors=[interceptor])


@pytest.fixture
def paths() -> Paths:
    return Paths()


@pytest.fixture
def server(paths: Paths):
    handle = _serve(paths)
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def _clear_seen():
    SEEN.clear()


def test_v2_session_end_to_end_with_connection(server, paths):
    with Session(server.target, protocol="v2", secrets={"api_token": SECRET}, configs={"region": "eu-1"}) as s:
        run = s.launch("keyed", seconds=0.2)
        assert run.wait(30).phase == "SUCCEEDED"
        assert run.outputs == {"job": run.outputs["job"]} and len(run.outputs["job"]) == 8
        assert [t.phase for t in run.transitions][-1] == "SUCCEEDED"
        assert "first" in str(run.logs()) and "second" in str(run.logs())
        assert list(run.metrics()["value"]) == [2.5]
        long = s.launch("keyed", seconds=3600.0)
        long.cancel()
        assert long.phase == "ABORTED"
        assert SECRET not in repr(s.transport) and "secrets={'api_token': ***}" in repr(s.transport)
        assert "protocol=v2" in repr(s.transport)
    assert paths.services() <= set(V2_SERVICES) and V2_SERVICES[0] in paths.services()
    # Connection reached create, get and delete as keyword arguments; never metrics/logs (Flyte 2 does the same).
    assert ("create", SECRET, "eu-1") in SEEN and ("get", SECRET, "eu-1") in SEEN
    assert any(m == "delete" and token == SECRET for m, token, _ in SEEN)


def test_v1_sends_no_connection(server, paths):
    with Session(server.target, protocol="v1") as s:
        assert s.launch("keyed").wait(30).phase == "SUCCEEDED"
    assert paths.services() <= set(V1_SERVICES)
    assert ("create", None, None) in SEEN


def test_auto_prefers_v1_and_remembers(server, paths):
    with Session(server.target) as s:
        assert s.launch("keyed").wait(30).phase == "SUCCEEDED"
        assert s.transport.protocol == "v1"
    assert paths.services() <= set(V1_SERVICES)


def test_auto_falls_back_to_v2_once(recorder_v2_only):
    handle, paths = recorder_v2_only
    with Session(handle.target, secrets={"api_token": SECRET}) as s:
        assert {c.task_type for c in s.connectors()} == {"keyed", "hangs"}
        assert s.transport.protocol == "v2"
        assert s.launch("keyed").wait(30).phase == "SUCCEEDED"
        s.connectors()
    methods = [m for m, _ in paths.calls]
    assert methods.count("/flyteidl.service.AgentMetadataService/ListAgents") == 1  # asked once, then remembered
    assert "/flyteidl2.connector.ConnectorMetadataService/ListConnectors" in methods
    assert "/flyteidl2.connector.AsyncConnectorService/CreateTask" in methods
    assert ("create", SECRET, None) in SEEN


@pytest.fixture
def recorder_v2_only():
    paths = Paths(refuse=V1_SERVICES)
    handle = _serve(paths)
    yield handle, paths
    handle.stop()


def test_neither_protocol_is_a_clear_error():
    paths = Paths(refuse=V1_SERVICES + V2_SERVICES)
    handle = _serve(paths)
    try:
        with Session(handle.target) as s, pytest.raises(NotSupportedError, match="does not implement list_conn"):
            s.connectors()
    finally:
        handle.stop()


def test_both_service_names_report_serving(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in V1_SERVICES + V2_SERVICES:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name


def test_secret_in_a_connector_error_is_masked(server, caplog):
    caplog.set_level(logging.DEBUG, logger="connector_nb")
    with Session(server.target, protocol="v2", secrets={"api_token": SECRET}) as s:
        with pytest.raises(ConnectorCallError, match="service refused key") as info:
            s.launch("keyed", seconds=-1.0)
    assert SECRET not in str(info.value) and MASK in str(info.value)
    assert SECRET not in caplog.text


def test_connection_field_round_trip():
    extra = connection_bytes({"api_token": SECRET}, {"region": "eu-1"}, "keyed")
    request = agent_pb2.CreateTaskRequest(output_prefix="/tmp/x")
    data = request.SerializeToString() + extra
    assert agent_pb2.CreateTaskRequest.FromString(data).output_prefix == "/tmp/x"  # v1 skips field 5
    assert read_connection(data) == ({"api_token": SECRET}, {"region": "eu-1"})
    assert read_connection(request.SerializeToString()) == ({}, {})
    assert connection_bytes({}, {}) == b""


@pytest.mark.parametrize(("options", "error", "match"), [
    ({"protocol": "v3"}, ValueError, "protocol must be 'auto', 'v1' or 'v2'; got 'v3'"),
    ({"protocol": "v1", "secrets": {"k": "v"}}, ValueError, "protocol='v1'"),
    ({"secrets": {"k": 1}}, TypeError, "secrets must be a mapping of str to str"),
    ({"configs": ["a"]}, TypeError, "configs must be a mapping of str to str"),
    ({"token": 12}, TypeError, "token must be a str, got int"),
    ({"token": "a\nb"}, ValueError, "single-line"),
    ({"token": "t", "metadata": {"Authorization": "Bearer x"}}, ValueError, "not both"),
])
def test_bad_options_are_clear(options, error, match):
    with pytest.raises(error, match=match):
        GrpcTransport("grpc://127.0.0.1:1", **options)


def test_token_is_sent_and_masked(server, paths, monkeypatch):
    monkeypatch.delenv("CONNECTOR_NB_TOKEN", raising=False)
    with Session(server.target, token=SECRET) as s:
        s.connectors()
        assert SECRET not in repr(s.transport) and "'authorization': ***" in repr(s.transport)
    monkeypatch.setenv("CONNECTOR_NB_TOKEN", "from-env-77")
    with Session(server.target) as s:
        s.connectors()
    with Session(server.target, metadata={"authorization": "Bearer explicit-1"}) as s:  # explicit metadata wins
        s.connectors()
    sent = [md.get("authorization") for m, md in paths.calls if m.endswith("/ListAgents")]
    assert sent == [f"Bearer {SECRET}", "Bearer from-env-77", "Bearer explicit-1"]


def test_refused_credentials_raise_auth_error(monkeypatch):
    monkeypatch.delenv("CONNECTOR_NB_TOKEN", raising=False)
    handle = _serve(Paths(token="right-token"))
    try:
        with Session(handle.target, token="wrong-token") as s:
            with pytest.raises(AuthError, match="UNAUTHENTICATED: missing or wrong bearer token") as info:
                s.connectors()
            assert "wrong-token" not in str(info.value)
        with Session(handle.target, token="right-token") as s:
            assert s.launch("keyed").wait(30).phase == "SUCCEEDED"
    finally:
        handle.stop()


async def test_hung_connector_get_is_a_call_timeout(server):
    transport = GrpcTransport(server.target, timeout=1.0)
    try:
        meta = await transport.create(task_template("hangs"), agent_pb2.CreateTaskRequest().inputs, "/tmp/x")
        with pytest.raises(CallTimeoutError, match=r"'hangs': get\(\) did not return within 1 s"):
            await transport.get(TaskCategory("hangs"), meta)
    finally:
        await transport.aclose()


async def test_agent_error_without_message_field_is_read():
    """flyteidl 1.16's AgentError has only code/kind/origin: its code and kind become the run's message."""

    async def get_task(request, context):
        resource = agent_pb2.Resource(phase=execution_pb2.TaskExecution.FAILED)
        resource.agent_error.code = "QUOTA_EXCEEDED"
        resource.agent_error.kind = agent_pb2.AgentError.NON_RECOVERABLE
        return agent_pb2.GetTaskResponse(resource=resource)

    handler = grpc.unary_unary_rpc_method_handler(
        get_task, request_deserializer=agent_pb2.GetTaskRequest.FromString,
        response_serializer=agent_pb2.GetTaskResponse.SerializeToString,
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(V1_SERVICES[0], {"GetTask": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    transport = GrpcTransport(f"127.0.0.1:{port}", protocol="v1")
    try:
        resource = await transport.get(TaskCategory("x"), b"{}")
        assert resource.phase == "FAILED" and resource.message == "QUOTA_EXCEEDED (NON_RECOVERABLE)"
    finally:
        await transport.aclose()
        await server.stop(None)
