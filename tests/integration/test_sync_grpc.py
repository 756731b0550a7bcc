"""Sync connectors over our own service: ``SyncAgentService.ExecuteTaskSync`` served and called, and in-process."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
from flyteidl.admin import agent_pb2
from flyteidl.core import literals_pb2
from flyteidl.service import agent_pb2_grpc

sys.path.insert(0, str(Path(__file__).parent))

from connector_nb import ConnectorRegistry, Session
from connector_nb.connector import AsyncConnector, Resource, ResourceMeta
from connector_nb.errors import (
    ConnectorCallError,
    CreateOutcomeUnknownError,
    NotSupportedError,
    UnknownTaskTypeError,
)
from connector_nb.literals import to_literal_map
from connector_nb.server import serve
from connector_nb.testing import FakeConnector, wait_until
from connector_nb.transports.base import TaskCategory
from connector_nb.transports.grpc import GrpcTransport
from connector_nb.transports.local import LocalTransport

SECRET = "s3cr3t-token-value-0042"


class Greeter(AsyncConnector[ResourceMeta]):
    """A sync-style connector: ``do()`` answers at once; it has no job to poll."""

    name = "Greeter"
    is_sync = True
    input_types = {"who": str, "fail": bool, "api_token": str}  # type: ignore[assignment]
    output_types = {"greeting": str, "length": int}  # type: ignore[assignment]
    input_defaults = {"fail": False, "api_token": ""}  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__(task_type_name="greet")
        self.calls: list[dict[str, Any]] = []
        self.gate: threading.Event | None = None  # set by a test to hold do() until released

    def do(self, task_template: Any, output_prefix: str, inputs: dict[str, Any] | None = None,
           **kwargs: Any) -> Resource:
        """Greet ``who``; FAILED when asked to; raises on ``who == "boom"`` (echoing the api_token secret)."""
        values = dict(inputs or {})
        self.calls.append({"prefix": output_prefix, **{k: v for k, v in values.items() if k == "who"}})
        if self.gate is not None:
            self.gate.wait(30)  # a hung do(): released by the test's teardown
        if values.get("who") == "boom":
            raise RuntimeError(f"exploded with {values.get('api_token')}")
        if values.get("fail"):
            return Resource(phase="FAILED", message=f"refused to greet {values['who']}")
        greeting = f"hello {values['who']}"
        return Resource(phase="SUCCEEDED", message="greeted", outputs={"greeting": greeting, "length": len(greeting)})

    def create(self, task_template: Any, output_prefix: str, **kwargs: Any) -> ResourceMeta:
        """Never called: a sync connector is launched with do()."""
        raise AssertionError("create() called on a sync connector")

    def get(self, resource_meta: ResourceMeta, **kwargs: Any) -> Resource:
        """Never called."""
        raise AssertionError("get() called on a sync connector")

    def delete(self, resource_meta: ResourceMeta, **kwargs: Any) -> None:
        """Never called."""
        raise AssertionError("delete() called on a sync connector")


@pytest.fixture
def greeter() -> Greeter:
    return Greeter()


@pytest.fixture
def service(greeter):
    fake = FakeConnector("plain", script=["SUCCEEDED"])
    handle = serve(ConnectorRegistry([greeter, fake]), port=0, block=False)
    yield handle
    if greeter.gate is not None:
        greeter.gate.set()
    handle.stop()


def _stub(target: str) -> tuple[grpc.Channel, Any]:
    channel = grpc.insecure_channel(target.removeprefix("grpc://"))
    return channel, agent_pb2_grpc.SyncAgentServiceStub(channel)


def _requests(task_type: str, inputs: dict[str, Any] | None = None) -> list[agent_pb2.ExecuteTaskSyncRequest]:
    header = agent_pb2.CreateRequestHeader(output_prefix="/tmp/out")
    header.template.type = task_type
    literal_map = to_literal_map(inputs or {})
    return [agent_pb2.ExecuteTaskSyncRequest(header=header), agent_pb2.ExecuteTaskSyncRequest(inputs=literal_map)]


def test_list_agents_reports_sync(service):
    with Session(service.target) as remote:
        infos = {c.task_type: c for c in remote.connectors()}
    assert infos["greet"].is_sync and not infos["plain"].is_sync


def test_raw_execute_task_sync_answers_header_with_final_resource(service, greeter):
    channel, stub = _stub(service.target)
    with channel:
        responses = list(stub.ExecuteTaskSync(iter(_requests("greet", {"who": "ada"})), timeout=10))
    assert len(responses) == 1 and responses[0].WhichOneof("res") == "header"
    resource = responses[0].header.resource
    assert resource.phase == 3 and resource.message == "greeted"  # SUCCEEDED
    assert resource.outputs.literals["greeting"].scalar.primitive.string_value == "hello ada"
    assert greeter.calls == [{"prefix": "/tmp/out", "who": "ada"}]


@pytest.mark.parametrize(("requests", "code", "detail"), [
    (_requests("nope"), grpc.StatusCode.NOT_FOUND, "nope"),
    (_requests("plain"), grpc.StatusCode.UNIMPLEMENTED, "not sync"),
    (_requests("greet")[1:], grpc.StatusCode.INVALID_ARGUMENT, "header"),
    (_requests("")[:1], grpc.StatusCode.INVALID_ARGUMENT, "template.type"),
    (_requests("greet")[:1] * 2, grpc.StatusCode.INVALID_ARGUMENT, "inputs"),
    (_requests("greet", {"who": "boom", "api_token": SECRET}), grpc.StatusCode.INTERNAL, "RuntimeError: exploded"),
])
def test_raw_execute_task_sync_errors(service, requests, code, detail):
    channel, stub = _stub(service.target)
    with channel, pytest.raises(grpc.RpcError) as info:
        list(stub.ExecuteTaskSync(iter(requests), timeout=10))
    assert info.value.code() == code, info.value.details()
    assert detail in info.value.details() and SECRET not in info.value.details()


def test_unparsable_request_is_invalid_argument(service):
    channel = grpc.insecure_channel(service.target.removeprefix("grpc://"))
    call = channel.stream_stream("/flyteidl.service.SyncAgentService/ExecuteTaskSync")
    with channel, pytest.raises(grpc.RpcError) as info:
        list(call(iter([b"\xff\xff\xff"]), timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid message" in info.value.details()


def test_bearer_token_guards_the_sync_service(greeter):
    with serve(ConnectorRegistry([greeter]), port=0, block=False, auth_token="tok-123") as handle:
        channel, stub = _stub(handle.target)
        with channel:
            with pytest.raises(grpc.RpcError) as info:
                list(stub.ExecuteTaskSync(iter(_requests("greet", {"who": "x"})), timeout=10))
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert greeter.calls == []
            ok = list(stub.ExecuteTaskSync(iter(_requests("greet", {"who": "x"})), timeout=10,
                                           metadata=[("authorization", "Bearer tok-123")]))
    assert ok[0].header.resource.message == "greeted" and len(greeter.calls) == 1


def test_session_launch_goes_final_at_once(service, greeter, tmp_path):
    with Session(service.target, output_dir=str(tmp_path)) as remote:
        run = remote.launch("greet", who="grace")
        assert run.phase == "SUCCEEDED" and run.done
        assert run.wait(10).phase == "SUCCEEDED"
        assert run.outputs == {"greeting": "hello grace", "length": 11}
        assert [t.phase for t in run.transitions] == ["QUEUED", "SUCCEEDED"]
        assert run.get_calls == 0 and run.resource_meta == b""
        failed = remote.launch("greet", who="bob", fail=True)
        assert failed.phase == "FAILED" and failed.message == "refused to greet bob"
        with pytest.raises(ConnectorCallError, match="exploded") as info:
            remote.launch("greet", who="boom", api_token=SECRET)
        assert SECRET not in str(info.value)
    assert [c["who"] for c in greeter.calls] == ["grace", "bob", "boom"]


def test_session_launch_journals_the_sync_run(service, tmp_path):
    from connector_nb.journal import Journal

    journal = Journal(str(tmp_path / "journal.db"))
    with Session(service.target, output_dir=str(tmp_path), journal=journal) as remote:
        run = remote.launch("greet", who="journal")
        run_id = run.run_id
        wait_until(lambda: [t["phase"] for t in journal.get(run_id)["transitions"]][-1:] == ["SUCCEEDED"],
                   what="the final transition in the journal")
        assert journal.get(run_id)["phase"] == "SUCCEEDED"


def test_hung_sync_call_is_sent_once_and_outcome_unknown(service, greeter, tmp_path):
    greeter.gate = threading.Event()
    with Session(service.target, output_dir=str(tmp_path), timeout=1.0) as remote:
        with pytest.raises(CreateOutcomeUnknownError, match="greet"):
            remote.launch("greet", who="slow")
    wait_until(lambda: len(greeter.calls) == 1, what="the one do() call")
    greeter.gate.set()
    assert [c["who"] for c in greeter.calls] == ["slow"]


def test_client_maps_errors_and_refuses_v2(service):
    import asyncio

    async def scenario() -> None:
        transport = GrpcTransport(service.target, protocol="v1")
        try:
            template = _requests("nope")[0].header.template
            with pytest.raises(UnknownTaskTypeError, match="greet"):  # the message lists what is offered
                await transport.execute_sync(template, literals_pb2.LiteralMap(), "/tmp/x")
            assert await transport.is_sync(TaskCategory("greet")) is True
            assert await transport.is_sync(TaskCategory("plain")) is False
            assert await transport.is_sync(TaskCategory("nope")) is False
        finally:
            await transport.aclose()
        v2 = GrpcTransport(service.target, protocol="v2")
        try:
            with pytest.raises(NotSupportedError, match="flyteidl2"):
                await v2.execute_sync(template, literals_pb2.LiteralMap(), "/tmp/x")
        finally:
            await v2.aclose()

    asyncio.run(scenario())


def test_in_process_sync_launch_calls_do(greeter, tmp_path):
    fake = FakeConnector("plain", script=["SUCCEEDED"])
    with Session(registry=ConnectorRegistry([greeter, fake]), output_dir=str(tmp_path)) as local:
        run = local.launch("greet", who="lin")
        assert run.phase == "SUCCEEDED" and run.outputs == {"greeting": "hello lin", "length": 9}
        assert [t.phase for t in run.transitions] == ["QUEUED", "SUCCEEDED"]
        assert local.launch("plain").wait(10).phase == "SUCCEEDED"  # async connectors unchanged
    assert [c["who"] for c in greeter.calls] == ["lin"]
    assert [m for m, _ in fake.calls] == ["create", "get"]


def test_local_execute_sync_refuses_an_async_connector():
    import asyncio

    transport = LocalTransport(ConnectorRegistry([FakeConnector("plain")]))
    template = _requests("plain")[0].header.template

    async def scenario() -> None:
        assert await transport.is_sync(TaskCategory("plain")) is False
        with pytest.raises(NotSupportedError, match="not sync"):
            await transport.execute_sync(template, literals_pb2.LiteralMap(), "/tmp/x")
        await transport.aclose()

    asyncio.run(scenario())


class _SplitServicer(agent_pb2_grpc.SyncAgentServiceServicer):
    """Answers as propeller allows: a header without outputs, then the outputs in messages of their own."""

    def __init__(self, header_first: bool = True) -> None:
        self.header_first = header_first
        self.calls = 0

    async def ExecuteTaskSync(self, requests: Any, context: Any) -> Any:
        """Read the header and inputs; echo the inputs back as outputs, split over two messages."""
        self.calls += 1
        parts = [r async for r in requests]
        inputs = parts[1].inputs
        if self.header_first:
            yield agent_pb2.ExecuteTaskSyncResponse(header=agent_pb2.ExecuteTaskSyncResponseHeader(
                resource=agent_pb2.Resource(phase=3, message="split")))
        for name in sorted(inputs.literals):
            one = literals_pb2.LiteralMap()
            one.literals[name].CopyFrom(inputs.literals[name])
            yield agent_pb2.ExecuteTaskSyncResponse(outputs=one)


@pytest.mark.parametrize("header_first", [True, False])
def test_client_merges_outputs_sent_after_the_header(header_first):
    import asyncio

    async def scenario() -> None:
        servicer = _SplitServicer(header_first)
        server = grpc.aio.server()
        agent_pb2_grpc.add_SyncAgentServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        transport = GrpcTransport(f"grpc://127.0.0.1:{port}", protocol="v1")
        try:
            request = _requests("split", {"a": 1, "b": "two"})
            call = transport.execute_sync(request[0].header.template, request[1].inputs, "/tmp/x")
            if not header_first:
                with pytest.raises(ConnectorCallError, match="without a header"):
                    await call
                return
            resource = await call
            assert resource.phase == "SUCCEEDED" and resource.message == "split"
            values = {k: v.scalar.primitive for k, v in resource.outputs.literals.items()}
            assert values["a"].integer == 1 and values["b"].string_value == "two"
        finally:
            await transport.aclose()
            await server.stop(None)
        assert servicer.calls == 1

    asyncio.run(scenario())


def test_a_sync_answer_that_is_not_final_makes_a_failed_run(tmp_path):
    class Unfinished(Greeter):
        def do(self, task_template: Any, output_prefix: str, inputs: dict[str, Any] | None = None,
               **kwargs: Any) -> Resource:
            return Resource(phase="RUNNING", message="still going")

    with Session(registry=ConnectorRegistry([Unfinished()]), output_dir=str(tmp_path)) as local:
        run = local.launch("greet", who="x")
        assert run.phase == "FAILED" and run.done and not run.live
        assert "answered RUNNING" in run.message and "still going" in run.message
