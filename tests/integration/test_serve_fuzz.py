"""gRPC fuzzing: random bytes and oversized values in each request field, then 1,000 concurrent malformed calls.

The server must stay up, health must answer throughout, and every status code must be the documented one:
INVALID_ARGUMENT (malformed), NOT_FOUND (unknown task type), RESOURCE_EXHAUSTED (over the message bound).
Seeded, so every run sends the same calls.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import pytest
from flyteidl.admin import agent_pb2
from flyteidl.core import execution_pb2
from flyteidl.service import agent_pb2_grpc
from google.protobuf import duration_pb2, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from connector_nb.connector import AsyncConnector, Resource, ResourceMeta
from connector_nb.registry import ConnectorRegistry
from connector_nb.server import ServeLimits, serve

SERVICE = "/flyteidl.service.AsyncAgentService/"
METHODS = ("CreateTask", "GetTask", "DeleteTask", "GetTaskMetrics", "GetTaskLogs")
REQUESTS = {"CreateTask": agent_pb2.CreateTaskRequest, "GetTask": agent_pb2.GetTaskRequest,
            "DeleteTask": agent_pb2.DeleteTaskRequest, "GetTaskMetrics": agent_pb2.GetTaskMetricsRequest,
            "GetTaskLogs": agent_pb2.GetTaskLogsRequest}
LIMITS = ServeLimits(max_message_bytes=64 * 1024, max_meta_bytes=512, max_log_lines=100, max_metric_samples=100)
DOCUMENTED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED}


@dataclass
class FuzzMeta(ResourceMeta):
    job: str = ""


class Target(AsyncConnector):
    name = "Fuzz target"
    task_type_name = "fuzz"
    metadata_type = FuzzMeta
    input_types = {"n": int, "s": str}

    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None, **kw: Any) -> FuzzMeta:
        return FuzzMeta(job="j")

    async def get(self, resource_meta: FuzzMeta, **kw: Any) -> Resource:
        return Resource(phase="SUCCEEDED")

    async def delete(self, resource_meta: FuzzMeta, **kw: Any) -> None:
        return None

    async def get_logs(self, resource_meta: FuzzMeta, **kw: Any) -> Any:
        yield agent_pb2.GetTaskLogsResponse(body=agent_pb2.GetTaskLogsResponseBody(results=["a"] * 500))

    async def get_metrics(self, resource_meta: FuzzMeta, **kw: Any) -> Any:
        return agent_pb2.GetTaskMetricsResponse()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field on the wire (appended, it overrides the earlier value of a singular field)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _number(request: type, name: str) -> int:
    return int(request.DESCRIPTOR.fields_by_name[name].number)


def _case(rng: random.Random, method: str) -> bytes:
    """One malformed request for ``method``: whole random bytes, or one field given random or oversized bytes."""
    request = REQUESTS[method]
    # over-limit messages are few: grpc takes a while to refuse each one
    kind = rng.choices(["bytes", "field", "huge", "category", "meta"], weights=[5, 5, 1, 5, 5])[0]
    blob = rng.randbytes(rng.randint(1, 300))
    if kind == "bytes":
        return blob
    if kind == "huge":
        field = "output_prefix" if method == "CreateTask" else "resource_meta"
        return _field(_number(request, field), b"p" * (LIMITS.max_message_bytes + 10))
    if method == "CreateTask":
        template = Target().task_template()
        template.type = "fuzz" if kind != "category" else rng.choice(["", "nope", "x" * 5000])
        base = request(template=template, output_prefix="out").SerializeToString()
        inputs = _field(1, _field(1, blob) + _field(2, blob))  # LiteralMap.literals: {bytes: random Literal}
        return base + (inputs if kind in ("field", "meta") else b"")
    base = request(task_category=agent_pb2.TaskCategory(name="fuzz"), resource_meta=blob)
    if method == "GetTaskMetrics" and rng.random() < 0.5:
        base.start_time.CopyFrom(timestamp_pb2.Timestamp(seconds=rng.choice([-(2**62), 0, 2**62])))
        base.step.CopyFrom(duration_pb2.Duration(seconds=rng.choice([-5, 0, 1])))
        base.resource_meta = FuzzMeta("j").encode()
    if method == "GetTaskLogs" and rng.random() < 0.5:
        base.token = "t" * 5000
        base.resource_meta = FuzzMeta("j").encode()
    raw = base.SerializeToString()
    if kind == "category":
        return raw + _field(_number(request, "task_category"), _field(1, blob))
    if kind == "field":
        return raw + _field(_number(request, "task_type"), blob) + _field(_number(request, "task_category"), b"")
    return raw + _field(_number(request, "resource_meta"), blob + b"[" * rng.choice([1, 5000]))


async def _call(channel: grpc.aio.Channel, method: str, raw: bytes) -> grpc.StatusCode:
    try:
        if method == "GetTaskLogs":
            async for _ in channel.unary_stream(SERVICE + method)(raw, timeout=60):
                pass
        else:
            await channel.unary_unary(SERVICE + method)(raw, timeout=60)
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


async def _health(channel: grpc.aio.Channel, done: asyncio.Event, answers: list[int]) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    while not done.is_set():
        answers.append((await stub.Check(health_pb2.HealthCheckRequest(), timeout=30)).status)
        await asyncio.sleep(0.005)  # pacing, not a wait: leave the two cores to the server


async def _fuzz(port: int, cases: list[tuple[str, bytes]], concurrent: bool) -> tuple[Counter[Any], list[int]]:
    options = [("grpc.max_send_message_length", 1 << 24)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel, \
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as health_channel:
        done, answers = asyncio.Event(), []
        checker = asyncio.create_task(_health(health_channel, done, answers))
        if concurrent:
            codes = await asyncio.gather(*(_call(channel, m, raw) for m, raw in cases))
        else:
            codes = [await _call(channel, m, raw) for m, raw in cases]
        done.set()
        await checker
        return Counter(zip((m for m, _ in cases), codes)), answers


@pytest.fixture(scope="module")
def handle():
    with serve(ConnectorRegistry([Target()]), port=0, block=False, limits=LIMITS) as h:
        yield h


def _check(name: str, seen: Counter[Any], answers: list[int], calls: int) -> None:
    by_code = Counter({code.name: 0 for code in DOCUMENTED})
    for (_, code), n in seen.items():
        by_code[code.name] += n
    print(f"\n{name}: {calls} calls; codes seen: {dict(sorted(by_code.items()))}; "
          f"health checks answered: {len(answers)}")
    undocumented = {key: n for key, n in seen.items() if key[1] not in DOCUMENTED}
    assert not undocumented, undocumented
    assert answers and set(answers) == {health_pb2.HealthCheckResponse.SERVING}


def test_fuzz_each_field_sequentially(handle):
    rng = random.Random(20261124)
    cases = [(m, _case(rng, m)) for _ in range(60) for m in METHODS]
    seen, answers = asyncio.run(_fuzz(handle.port, cases, concurrent=False))
    _check("sequential", seen, answers, len(cases))
    assert {code for _, code in seen} == DOCUMENTED  # each kind of malformation was reached


def test_a_thousand_concurrent_malformed_calls(handle):
    rng = random.Random(1000)
    cases = [(m, _case(rng, m)) for m in rng.choices(METHODS, k=1000)]
    seen, answers = asyncio.run(_fuzz(handle.port, cases, concurrent=True))
    _check("concurrent", seen, answers, len(cases))
    assert sum(seen.values()) == 1000 and handle.running
    with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:  # still serving real calls
        stub = agent_pb2_grpc.AsyncAgentServiceStub(channel)
        meta = stub.CreateTask(agent_pb2.CreateTaskRequest(template=Target().task_template()), timeout=10)
        got = stub.GetTask(agent_pb2.GetTaskRequest(task_category=agent_pb2.TaskCategory(name="fuzz"),
                                                    resource_meta=meta.resource_meta), timeout=10)
        assert got.resource.phase == execution_pb2.TaskExecution.SUCCEEDED
