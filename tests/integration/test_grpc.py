"""Our connector service over real loopback gRPC: raw flyteidl stubs (as propeller calls it) and our client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from flyteidl.admin import agent_pb2
from flyteidl.core import execution_pb2, metrics_pb2
from flyteidl.service import agent_pb2_grpc
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from connector_nb.connector import AsyncConnector, Resource, ResourceMeta
from connector_nb.errors import (
    ConnectorCallError,
    InputError,
    MetadataError,
    NotSupportedError,
    ServiceUnavailableError,
    UnknownTaskTypeError,
)
from connector_nb.literals import to_literal_map
from connector_nb.registry import ConnectorRegistry
from connector_nb.server import serve
from connector_nb.session import Session
from connector_nb.template import task_template
from connector_nb.testing import wait_until
from connector_nb.transports.base import TaskCategory
from connector_nb.transports.grpc import GrpcTransport, parse_target

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable

# --------------------------------------------------------------------------------------------------------
# Fake connectors. State lives in the metadata (a deadline), so a restarted server can answer for a job.

DELETED: list[str] = []


@dataclass
class JobMeta(ResourceMeta):
    job_id: str
    deadline: float
    fail: bool = False


class FakeJob(AsyncConnector):
    name = "Fake Job"
    task_type_name = "fake_job"
    metadata_type = JobMeta
    input_types = {"seconds": float, "fail": bool}
    output_types = {"answer": int}
    input_defaults = {"seconds": 0.0, "fail": False}

    async def create(self, task_template, output_prefix, inputs=None, **kwargs) -> JobMeta:
        inputs = inputs or {}
        if float(inputs.get("seconds", 0)) < 0:
            raise InputError(f"seconds must be >= 0, got {inputs['seconds']}")
        return JobMeta(uuid.uuid4().hex[:8], time.time() + float(inputs.get("seconds", 0)), bool(inputs.get("fail")))

    async def get(self, resource_meta: JobMeta, **kwargs) -> Resource:
        if time.time() < resource_meta.deadline:
            return Resource(phase="RUNNING", message="working")
        if resource_meta.fail:
            return Resource(phase="FAILED", message=f"job {resource_meta.job_id} asked to fail")
        links = [execution_pb2.TaskLog(name="console", uri=f"https://example.test/{resource_meta.job_id}")]
        return Resource(phase="SUCCEEDED", message="done", outputs={"answer": 42}, log_links=links,
                        custom_info={"job": resource_meta.job_id})

    async def delete(self, resource_meta: JobMeta, **kwargs) -> None:
        DELETED.append(resource_meta.job_id)

    async def get_metrics(self, resource_meta: JobMeta, **kwargs) -> agent_pb2.GetTaskMetricsResponse:
        data = struct_pb2.Struct()
        data.update({"result": [{"metric": {"job": resource_meta.job_id}, "values": [[1700000000, "1.5"]]}]})
        return agent_pb2.GetTaskMetricsResponse(results=[metrics_pb2.ExecutionMetricResult(metric="cpu", data=data)])

    async def get_logs(self, resource_meta: JobMeta, lines: int = 0, token: str = "", **kwargs):
        yield agent_pb2.GetTaskLogsResponse(header=agent_pb2.GetTaskLogsResponseHeader(token="next-3"))
        yield agent_pb2.GetTaskLogsResponse(body=agent_pb2.GetTaskLogsResponseBody(results=["line 1", "line 2"]))
        yield agent_pb2.GetTaskLogsResponse(body=agent_pb2.GetTaskLogsResponseBody(results=["line 3"]))


@dataclass
class PlainMeta(ResourceMeta):
    job_id: str


class SyncPlain(AsyncConnector):
    """Blocking ``def`` methods, no metrics and no logs."""

    name = "Sync Plain"
    task_type_name = "sync_plain"
    metadata_type = PlainMeta

    def create(self, task_template, output_prefix, inputs=None, **kwargs) -> PlainMeta:
        return PlainMeta("p1")

    def get(self, resource_meta: PlainMeta, **kwargs) -> Resource:
        return Resource(phase="SUCCEEDED")

    def delete(self, resource_meta: PlainMeta, **kwargs) -> None:
        pass


class Boom(AsyncConnector):
    name = "Boom"
    task_type_name = "boom"
    metadata_type = PlainMeta

    def create(self, task_template, output_prefix, inputs=None, **kwargs) -> PlainMeta:
        raise ValueError("kaboom in create")

    async def get(self, resource_meta: PlainMeta, **kwargs) -> Resource:
        raise RuntimeError("kaboom in get")

    async def delete(self, resource_meta: PlainMeta, **kwargs) -> None:
        pass


class QuietLogs(AsyncConnector):
    """Logs in the two other shapes: a coroutine returning one message, and a stream of zero messages."""

    name = "Quiet Logs"
    task_type_name = "quiet_logs"
    task_type_version = 2
    metadata_type = PlainMeta

    async def create(self, task_template, output_prefix, inputs=None, **kwargs) -> PlainMeta:
        return PlainMeta("q1")

    async def get(self, resource_meta: PlainMeta, **kwargs) -> Resource:
        return Resource(phase="SUCCEEDED")

    async def delete(self, resource_meta: PlainMeta, **kwargs) -> None:
        pass

    async def get_logs(self, resource_meta: PlainMeta, **kwargs) -> agent_pb2.GetTaskLogsResponse:
        return agent_pb2.GetTaskLogsResponse(body=agent_pb2.GetTaskLogsResponseBody(results=["only line"]))


class EmptyLogs(QuietLogs):
    task_type_name = "empty_logs"
    task_type_version = 0

    async def get_logs(self, resource_meta: PlainMeta, **kwargs):
        return
        yield


def _registry() -> ConnectorRegistry:
    return ConnectorRegistry([FakeJob, SyncPlain, Boom, QuietLogs, EmptyLogs])


class RecordMetadata(grpc.aio.ServerInterceptor):
    """Records (method, invocation metadata) of every call, to check what the client attached."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def intercept_service(self, continuation, handler_call_details):
        self.calls.append((handler_call_details.method, dict(handler_call_details.invocation_metadata or ())))
        return await continuation(handler_call_details)


@pytest.fixture
def recorder() -> RecordMetadata:
    return RecordMetadata()


@pytest.fixture
def server(recorder: RecordMetadata):
    handle = serve(_registry(), port=0, host="127.0.0.1", block=False, interceptors=[recorder])
    yield handle
    handle.stop()


@pytest.fixture
def channel(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.fixture
def stub(channel) -> agent_pb2_grpc.AsyncAgentServiceStub:
    return agent_pb2_grpc.AsyncAgentServiceStub(channel)


@pytest.fixture
def session(server):
    s = Session(server.target, timeout=5.0)
    yield s
    s.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _category(name: str, version: int = 0) -> dict[str, Any]:
    # Filled as propeller fills it: the category and the deprecated task_type string.
    return {"task_type": name, "task_category": agent_pb2.TaskCategory(name=name, version=version)}


def _create(stub, task_type: str = "fake_job", **inputs: Any) -> bytes:
    template = task_template(task_type, inputs={k: type(v) for k, v in inputs.items()}, outputs={"answer": int})
    request = agent_pb2.CreateTaskRequest(
        template=template, inputs=to_literal_map(inputs, {k: type(v) for k, v in inputs.items()}),
        output_prefix="/tmp/out", task_execution_metadata=agent_pb2.TaskExecutionMetadata(namespace="ns"),
    )
    return stub.CreateTask(request, timeout=10).resource_meta


# --------------------------------------------------------------------------------------------------------
# (a) raw flyteidl stubs, as propeller calls the service


def test_raw_create_get_delete(stub):
    meta = _create(stub, seconds=0.0, fail=False)
    assert json.loads(meta)["job_id"]
    resource = stub.GetTask(agent_pb2.GetTaskRequest(resource_meta=meta, **_category("fake_job")), timeout=10).resource
    assert resource.phase == execution_pb2.TaskExecution.SUCCEEDED
    assert resource.outputs.literals["answer"].scalar.primitive.integer == 42
    assert resource.log_links[0].uri.endswith(json.loads(meta)["job_id"])
    assert resource.custom_info.fields["job"].string_value == json.loads(meta)["job_id"]
    stub.DeleteTask(agent_pb2.DeleteTaskRequest(resource_meta=meta, **_category("fake_job")), timeout=10)
    assert json.loads(meta)["job_id"] in DELETED


def test_raw_deprecated_task_type_only(stub):
    meta = _create(stub, seconds=0.0, fail=True)
    resource = stub.GetTask(agent_pb2.GetTaskRequest(task_type="fake_job", resource_meta=meta), timeout=10).resource
    assert resource.phase == execution_pb2.TaskExecution.FAILED
    assert "asked to fail" in resource.message


def test_raw_metrics_and_log_stream(stub):
    meta = _create(stub, seconds=0.0)
    metrics = stub.GetTaskMetrics(agent_pb2.GetTaskMetricsRequest(resource_meta=meta, **_category("fake_job")),
                                  timeout=10)
    assert metrics.results[0].metric == "cpu"
    stream = list(stub.GetTaskLogs(agent_pb2.GetTaskLogsRequest(resource_meta=meta, **_category("fake_job")),
                                   timeout=10))
    assert [r.WhichOneof("part") for r in stream] == ["header", "body", "body"]
    assert stream[0].header.token == "next-3"
    assert [line for r in stream[1:] for line in r.body.results] == ["line 1", "line 2", "line 3"]


def test_raw_coroutine_and_empty_log_streams(stub):
    meta = PlainMeta("q1").encode()
    one = list(stub.GetTaskLogs(agent_pb2.GetTaskLogsRequest(resource_meta=meta, **_category("quiet_logs", 2)),
                                timeout=10))
    assert [list(r.body.results) for r in one] == [["only line"]]
    none = list(stub.GetTaskLogs(agent_pb2.GetTaskLogsRequest(resource_meta=meta, **_category("empty_logs")),
                                 timeout=10))
    assert none == []


def test_raw_metadata_service(channel):
    meta_stub = agent_pb2_grpc.AgentMetadataServiceStub(channel)
    agents = {a.name: a for a in meta_stub.ListAgents(agent_pb2.ListAgentsRequest(), timeout=10).agents}
    assert set(agents) == {"Fake Job", "Sync Plain", "Boom", "Quiet Logs"}
    quiet = agents["Quiet Logs"]  # two connectors share the name: one agent, two categories
    assert {(c.name, c.version) for c in quiet.supported_task_categories} == {("quiet_logs", 2), ("empty_logs", 0)}
    assert list(agents["Fake Job"].supported_task_types) == ["fake_job"]
    assert not agents["Fake Job"].is_sync
    assert meta_stub.GetAgent(agent_pb2.GetAgentRequest(name="Boom"), timeout=10).agent.name == "Boom"
    with pytest.raises(grpc.RpcError) as info:
        meta_stub.GetAgent(agent_pb2.GetAgentRequest(name="Nope"), timeout=10)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    assert "'Fake Job'" in info.value.details()


def test_raw_health(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "flyteidl.service.AsyncAgentService", "flyteidl.service.AgentMetadataService"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_raw_errors_have_useful_details_and_server_survives(stub, channel):
    with pytest.raises(grpc.RpcError) as info:
        stub.GetTask(agent_pb2.GetTaskRequest(resource_meta=b"{}", **_category("nope", 3)), timeout=10)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    assert "'nope' version 3" in info.value.details() and "fake_job (v0)" in info.value.details()

    with pytest.raises(grpc.RpcError) as info:
        stub.GetTask(agent_pb2.GetTaskRequest(resource_meta=b"\x00not json", **_category("fake_job")), timeout=10)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed JobMeta bytes" in info.value.details()

    with pytest.raises(grpc.RpcError) as info:
        _create(stub, "boom")
    assert info.value.code() is grpc.StatusCode.INTERNAL
    assert info.value.details() == "ValueError: kaboom in create"

    with pytest.raises(grpc.RpcError) as info:
        stub.GetTask(agent_pb2.GetTaskRequest(resource_meta=PlainMeta("b").encode(), **_category("boom")), timeout=10)
    assert info.value.code() is grpc.StatusCode.INTERNAL
    assert info.value.details() == "RuntimeError: kaboom in get"

    with pytest.raises(grpc.RpcError) as info:
        stub.GetTaskMetrics(
            agent_pb2.GetTaskMetricsRequest(resource_meta=PlainMeta("p").encode(), **_category("sync_plain")),
            timeout=10,
        )
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED

    # still serving after every failure
    assert _create(stub, "sync_plain") == PlainMeta("p1").encode()


# --------------------------------------------------------------------------------------------------------
# (b) through GrpcTransport and Session


def test_parse_target():
    assert parse_target("grpc://127.0.0.1:8000") == ("127.0.0.1:8000", False)
    assert parse_target("localhost:9") == ("localhost:9", False)
    assert parse_target("grpcs://flyte.example.com") == ("flyte.example.com:443", True)
    assert parse_target("grpc://[::1]:81") == ("[::1]:81", False)
    for bad in ("http://x:1", "grpc://host", "host", "grpc://h:99999", "a b:1", ""):
        with pytest.raises(ValueError, match="expected 'grpc://host:port'"):
            parse_target(bad)


def test_session_launch_poll_outputs_cancel(session, server):
    infos = {(c.task_type, c.version): c for c in session.connectors()}
    assert infos[("fake_job", 0)].name == "Fake Job" and infos[("quiet_logs", 2)].name == "Quiet Logs"

    ok = session.launch("fake_job", seconds=0.2, fail=False)
    failed = session.launch("fake_job", seconds=0.0, fail=True)
    assert ok.wait(30).phase == "SUCCEEDED"
    assert ok.outputs == {"answer": 42}
    assert failed.wait(30).phase == "FAILED"
    assert "asked to fail" in failed.message

    long = session.launch("fake_job", seconds=3600.0, fail=False)
    long.cancel()
    assert long.phase == "ABORTED"
    assert json.loads(long.resource_meta)["job_id"] in DELETED


def test_session_logs_and_metrics(session):
    run = session.launch("fake_job", seconds=0.0)
    run.wait(30)
    assert "line 1" in str(run.logs()) and "line 3" in str(run.logs())
    frame = run.metrics()
    assert list(frame["metric"]) == ["cpu"] and list(frame["value"]) == [1.5]


async def test_transport_log_stream_shapes(server):
    transport = GrpcTransport(server.target)
    try:
        meta = JobMeta("j", 0.0).encode()
        stream = [r async for r in transport.get_logs(TaskCategory("fake_job"), meta)]
        assert stream[0].header.token == "next-3" and len(stream) == 3
        assert [r async for r in transport.get_logs(TaskCategory("empty_logs"), PlainMeta("q").encode())] == []
        one = [r async for r in transport.get_logs(TaskCategory("quiet_logs", 2), PlainMeta("q").encode())]
        assert list(one[0].body.results) == ["only line"]
    finally:
        await transport.aclose()


async def test_transport_error_mapping(server):
    transport = GrpcTransport(server.target)
    try:
        plain = PlainMeta("p").encode()
        with pytest.raises(NotSupportedError, match="this connector has no metrics"):
            await transport.get_metrics(TaskCategory("sync_plain"), plain)
        with pytest.raises(NotSupportedError, match="this connector has no logs"):
            [r async for r in transport.get_logs(TaskCategory("sync_plain"), plain)]
        with pytest.raises(UnknownTaskTypeError) as info:
            await transport.get(TaskCategory("nope"), plain)
        assert "fake_job (v0)" in str(info.value) and "quiet_logs (v2)" in str(info.value)
        with pytest.raises(MetadataError, match="malformed JobMeta bytes"):
            await transport.get(TaskCategory("fake_job"), b"garbage")
        with pytest.raises(ConnectorCallError, match="kaboom in get") as info:
            await transport.get(TaskCategory("boom"), plain)
        assert "RuntimeError" in str(info.value)
        with pytest.raises(ConnectorCallError, match=r"failed in create\(\): ValueError: kaboom in create"):
            await transport.create(task_template("boom"), agent_pb2.CreateTaskRequest().inputs, "/tmp/x")
        with pytest.raises(InputError, match="seconds must be >= 0, got -1.0"):  # INVALID_ARGUMENT
            await transport.create(task_template("fake_job", inputs={"seconds": float}),
                                   to_literal_map({"seconds": -1.0}, {"seconds": float}), "/tmp/x")
    finally:
        await transport.aclose()


def test_session_unknown_task_type_lists_offers(session):
    with pytest.raises(UnknownTaskTypeError, match="registered: .*fake_job \\(v0\\)"):
        session.launch("nope", x=1)


async def test_service_down_is_clear():
    port = _free_port()
    transport = GrpcTransport(f"127.0.0.1:{port}", retries=2, backoff=0.01, metadata={"authorization": "Bearer s3cret"})
    try:
        with pytest.raises(ServiceUnavailableError) as info:
            await transport.connectors()
        message = str(info.value)
        assert message.startswith(f"connector service at grpc://127.0.0.1:{port} is unavailable: ")
        assert "s3cret" not in message and "s3cret" not in repr(transport)
    finally:
        await transport.aclose()


def test_reconnects_after_restart_on_same_port(recorder):
    first = serve(_registry(), port=0, block=False)
    port = first.port
    second = None
    try:
        with Session(first.target, timeout=5.0) as session:
            run = session.launch("fake_job", seconds=1.0)
            first.stop()
            assert not first.running
            wait_until(lambda: run.unreachable_since is not None, what="the run to see the outage")
            assert run.live and "unreachable since" in run.message  # and it keeps polling
            second = serve(_registry(), port=port, block=False)
            assert run.wait(60).phase == "SUCCEEDED"
            assert run.outputs == {"answer": 42}
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_call_metadata_reaches_server_and_is_masked(server, recorder):
    secret = "Bearer s3cret-token"
    with Session(server.target, metadata=[("Authorization", secret), ("x-team", "nb")]) as session:
        run = session.launch("fake_job", seconds=0.0)
        run.wait(30)
        assert "s3cret" not in repr(session.transport) and "'authorization': ***" in repr(session.transport)
        assert "s3cret" not in repr(session)
    methods = {m.rsplit("/", 1)[1]: md for m, md in recorder.calls}
    for method in ("CreateTask", "GetTask"):
        assert methods[method]["authorization"] == secret and methods[method]["x-team"] == "nb"


def test_port_in_use_is_an_error(server):
    with pytest.raises(OSError, match=f"127.0.0.1:{server.port}"):
        serve(_registry(), port=server.port, block=False)


# --------------------------------------------------------------------------------------------------------
# TLS


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def test_tls(tmp_path):
    cert, key = _self_signed(tmp_path)
    handle = serve(_registry(), port=0, block=False, certificate=str(cert), private_key=str(key))
    try:
        assert handle.target.startswith("grpcs://127.0.0.1:")
        with Session(handle.target, root_certificates=str(cert)) as session:
            assert session.launch("fake_job", seconds=0.0).wait(30).phase == "SUCCEEDED"
        with Session(handle.target, root_certificates=cert.read_bytes()) as session:
            assert any(c.task_type == "fake_job" for c in session.connectors())

        async def untrusted() -> None:  # system roots do not trust a self-signed certificate
            transport = GrpcTransport(handle.target, retries=0, timeout=5)
            try:
                await transport.connectors()
            finally:
                await transport.aclose()

        with pytest.raises(ServiceUnavailableError):
            asyncio.run(untrusted())
    finally:
        handle.stop()


def test_plaintext_with_ca_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="grpcs://"):
        GrpcTransport("grpc://127.0.0.1:1", root_certificates="-----BEGIN CERTIFICATE-----")


# --------------------------------------------------------------------------------------------------------
# CLI: connector-nb serve

CLI = """
import argparse, sys
from connector_nb.cli import add_serve_parser
parser = argparse.ArgumentParser(prog="connector-nb")
add_serve_parser(parser.add_subparsers())
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""

MODULE = '''
from connector_nb.connector import AsyncConnector, Resource, ResourceMeta

class Echo(AsyncConnector):
    name = "Echo"
    task_type_name = "echo_cli"
    async def create(self, task_template, output_prefix, inputs=None, **kw): return ResourceMeta()
    async def get(self, resource_meta, **kw): return Resource(phase="SUCCEEDED", message="echo")
    async def delete(self, resource_meta, **kw): pass
'''


def test_cli_serve_modules_and_sigterm(tmp_path):
    (tmp_path / "cli_connectors.py").write_text(textwrap.dedent(MODULE))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [PY, "-c", CLI, "serve", "--port", "0", "--host", "127.0.0.1", "--modules", "cli_connectors"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = _readline(proc)
        assert line.startswith("connector service listening on grpc://127.0.0.1:"), line
        target = line.split()[-1]
        with Session(target) as session:
            assert "echo_cli" in {c.task_type for c in session.connectors()}
            assert session.launch("echo_cli").wait(30).message == "echo"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _readline(proc: subprocess.Popen) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(60)
    if not result or not result[0]:
        proc.kill()
        raise AssertionError(f"server printed nothing; stderr: {proc.stderr.read()}")
    return result[0].strip()
