"""GetTask throughput and latency: our connector service vs flytekit's ``pyflyte serve connector``.

Both services run in their own process on 127.0.0.1 with the same trivial connector (an ``async def get``
that returns SUCCEEDED at once) and receive the same load: ``--concurrency`` callers (64) each keeping one
GetTask in flight, over grpc.aio with the raw flyteidl stubs, for ``--seconds`` (5) after a warm-up.
Then our GrpcTransport client against raw stubs, both on our service.

    .venv/bin/python benchmarks/bench_grpc.py [--seconds 5] [--concurrency 64] [--skip-flytekit]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

REPO = Path(__file__).resolve().parents[1]
INTEGRATION = REPO / "tests" / "integration"
META = json.dumps({"job_id": "fast", "deadline": 0.0, "fail": False}).encode()

#: Our service with the same trivial connector as flytekit_connector_module.FastGetConnector.
OUR_SERVER = """
import sys
from dataclasses import dataclass
from connector_nb.connector import AsyncConnector, Resource, ResourceMeta
from connector_nb.registry import ConnectorRegistry
from connector_nb.server import serve

@dataclass
class Meta(ResourceMeta):
    job_id: str
    deadline: float
    fail: bool = False

class FastGet(AsyncConnector):
    name = "Fast Get Connector"
    task_type_name = "fast_get"
    metadata_type = Meta
    async def create(self, task_template, output_prefix, inputs=None, **kw): return Meta("fast", 0.0)
    async def get(self, resource_meta, **kw): return Resource(phase="SUCCEEDED", message=resource_meta.job_id)
    async def delete(self, resource_meta, **kw): pass

serve(ConnectorRegistry([FastGet]), port=int(sys.argv[1]), host="127.0.0.1")
"""


@dataclass
class Result:
    name: str
    calls: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def throughput(self) -> float:
        return self.calls / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

    def row(self) -> str:
        return (f"{self.name:<34} {self.throughput:>10.0f} {self.pct(0.5):>9.2f} {self.pct(0.99):>9.2f} "
                f"{self.calls:>9} {self.errors:>7}")


HEADER = f"{'':<34} {'calls/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'calls':>9} {'errors':>7}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    import grpc
    from flyteidl.admin import agent_pb2
    from flyteidl.service import agent_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = agent_pb2_grpc.AgentMetadataServiceStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                stub.ListAgents(agent_pb2.ListAgentsRequest(), timeout=2)
                return
            except grpc.RpcError:
                time.sleep(0.2)
    raise RuntimeError("server did not come up")


def _start(argv: list[str], port: int, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.Popen:
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(port, proc)
    except BaseException:
        _stop(proc)
        raise
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _load(name: str, call: Callable[[], Awaitable[Any]], concurrency: int, seconds: float,
                warmup: float) -> Result:
    """``concurrency`` callers each keep one call in flight; only calls made after the warm-up count."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds

    async def caller() -> None:
        nonlocal errors
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            try:
                await call()
            except Exception:
                errors += 1
                continue
            if t0 >= measure_from:
                latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return Result(name, len(latencies), errors, time.perf_counter() - measure_from, latencies)


def _get_request() -> Any:
    from flyteidl.admin import agent_pb2

    category = agent_pb2.TaskCategory(name="fast_get", version=0)
    return agent_pb2.GetTaskRequest(task_type="fast_get", task_category=category, resource_meta=META)


async def bench_raw(name: str, port: int, args: argparse.Namespace) -> Result:
    import grpc.aio
    from flyteidl.service import agent_pb2_grpc

    request = _get_request()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = agent_pb2_grpc.AsyncAgentServiceStub(channel)
        response = await stub.GetTask(request, timeout=10)
        assert response.resource.message == "fast", response
        return await _load(name, lambda: stub.GetTask(request, timeout=10), args.concurrency, args.seconds,
                           args.warmup)


async def bench_transport(name: str, port: int, args: argparse.Namespace) -> Result:
    from connector_nb.transports.base import TaskCategory
    from connector_nb.transports.grpc import GrpcTransport

    transport = GrpcTransport(f"grpc://127.0.0.1:{port}")
    category = TaskCategory("fast_get")
    try:
        assert (await transport.get(category, META)).message == "fast"
        return await _load(name, lambda: transport.get(category, META), args.concurrency, args.seconds, args.warmup)
    finally:
        await transport.aclose()


def run_ours(args: argparse.Namespace) -> tuple[Result, Result]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = _start([sys.executable, "-c", OUR_SERVER, str(port)], port, env)
    try:
        raw = asyncio.run(bench_raw("ours (raw stubs)", port, args))
        client = asyncio.run(bench_transport("ours (GrpcTransport client)", port, args))
    finally:
        _stop(proc)
    return raw, client


def run_flytekit(args: argparse.Namespace) -> Result:
    sys.path.insert(0, str(INTEGRATION))
    from flytekit_env import flytekit_python, serve_connector_command

    python = flytekit_python()
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(INTEGRATION)}
    argv = serve_connector_command(python, port, _free_port(), ["flytekit_connector_module"])
    proc = _start(argv, port, env, cwd=INTEGRATION)
    try:
        return asyncio.run(bench_raw("flytekit pyflyte serve connector", port, args))
    finally:
        _stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds, not measured (default 1)")
    parser.add_argument("--concurrency", type=int, default=64, help="in-flight callers (default 64)")
    parser.add_argument("--skip-flytekit", action="store_true", help="only benchmark our service")
    args = parser.parse_args()

    ours, client = run_ours(args)
    theirs = None if args.skip_flytekit else run_flytekit(args)
    print(f"\nGetTask, {args.concurrency} in-flight callers, {args.seconds:g} s each ({os.cpu_count()} CPUs)\n")
    print(HEADER)
    for result in (ours, theirs, client):
        if result is not None:
            print(result.row())
    print()
    if theirs is not None:
        print(f"throughput ours/flytekit: {ours.throughput / theirs.throughput:.2f}x   "
              f"p50 flytekit/ours: {theirs.pct(0.5) / ours.pct(0.5):.2f}x")
    overhead = statistics.median(client.latencies) - statistics.median(ours.latencies)
    print(f"GrpcTransport vs raw stubs: {client.throughput / ours.throughput:.2f}x throughput, "
          f"{overhead * 1e6:+.0f} us p50")


if __name__ == "__main__":
    main()
