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
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

REPO = Path(__file__).resolve().parents[1]
INTEGRATION = REPO / "tests" / "integration"
sys.path.insert(0, str(INTEGRATION))
from flytekit_env import free_port, stop_process  # noqa: E402

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
    #: Server process CPU seconds (all threads) during the measured window: robust to a noisy machine.
    server_cpu: float = float("nan")

    @property
    def throughput(self) -> float:
        return self.calls / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

    @property
    def cpu_per_call(self) -> float:
        """Server CPU microseconds per GetTask."""
        return self.server_cpu / self.calls * 1e6 if self.calls else float("nan")

    def row(self) -> str:
        return (f"{self.name:<34} {self.throughput:>10.0f} {self.pct(0.5):>9.2f} {self.pct(0.99):>9.2f} "
                f"{self.cpu_per_call:>12.0f} {self.calls:>9} {self.errors:>7}")


HEADER = f"{'':<34} {'calls/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'srv CPU us':>12} {'calls':>9} {'errors':>7}"


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
        stop_process(proc)
        raise
    return proc


def _cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def _load(name: str, call: Callable[[], Awaitable[Any]], pid: int, args: argparse.Namespace) -> Result:
    """``concurrency`` callers each keep one call in flight; only calls made after the warm-up count."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from, stop_at = start + args.warmup, start + args.warmup + args.seconds
    cpu: list[float] = []

    async def sample_cpu() -> None:  # server CPU over exactly the measured window
        await asyncio.sleep(args.warmup)
        cpu.append(_cpu(pid))
        await asyncio.sleep(args.seconds)
        cpu.append(_cpu(pid))

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

    await asyncio.gather(sample_cpu(), *(caller() for _ in range(args.concurrency)))
    return Result(name, len(latencies), errors, time.perf_counter() - measure_from, latencies, cpu[1] - cpu[0])


def _get_request() -> Any:
    from flyteidl.admin import agent_pb2

    category = agent_pb2.TaskCategory(name="fast_get", version=0)
    return agent_pb2.GetTaskRequest(task_type="fast_get", task_category=category, resource_meta=META)


async def bench_raw(name: str, port: int, pid: int, args: argparse.Namespace) -> Result:
    import grpc.aio
    from flyteidl.service import agent_pb2_grpc

    request = _get_request()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = agent_pb2_grpc.AsyncAgentServiceStub(channel)
        response = await stub.GetTask(request, timeout=10)
        assert response.resource.message == "fast", response
        return await _load(name, lambda: stub.GetTask(request, timeout=10), pid, args)


async def bench_transport(name: str, port: int, pid: int, args: argparse.Namespace) -> Result:
    from connector_nb.transports.base import TaskCategory
    from connector_nb.transports.grpc import GrpcTransport

    transport = GrpcTransport(f"grpc://127.0.0.1:{port}")
    category = TaskCategory("fast_get")
    try:
        assert (await transport.get(category, META)).message == "fast"
        return await _load(name, lambda: transport.get(category, META), pid, args)
    finally:
        await transport.aclose()


def start_ours() -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return _start([sys.executable, "-c", OUR_SERVER, str(port)], port, env), port


def start_flytekit() -> tuple[subprocess.Popen, int]:
    sys.path.insert(0, str(INTEGRATION))
    from flytekit_env import flytekit_python, serve_connector_command

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(INTEGRATION)}
    argv = serve_connector_command(flytekit_python(), port, free_port(), ["flytekit_connector_module"])
    return _start(argv, port, env, cwd=INTEGRATION), port


def merged(results: list[Result]) -> Result:
    """One result from several rounds: interleaving rounds spreads a shared machine's noise evenly."""
    return Result(
        results[0].name, sum(r.calls for r in results), sum(r.errors for r in results),
        sum(r.seconds for r in results), [x for r in results for x in r.latencies],
        sum(r.server_cpu for r in results),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per round (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds, not measured (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per configuration (default 3)")
    parser.add_argument("--concurrency", type=int, default=64, help="in-flight callers (default 64)")
    parser.add_argument("--skip-flytekit", action="store_true", help="only benchmark our service")
    args = parser.parse_args()

    runs: dict[str, list[Result]] = {"ours": [], "flytekit": [], "client": []}
    with contextlib.ExitStack() as stack:
        ours_proc, ours_port = start_ours()
        stack.callback(stop_process, ours_proc)
        if not args.skip_flytekit:
            fk_proc, fk_port = start_flytekit()
            stack.callback(stop_process, fk_proc)
        for _ in range(args.rounds):
            runs["ours"].append(asyncio.run(bench_raw("ours (raw stubs)", ours_port, ours_proc.pid, args)))
            if not args.skip_flytekit:
                runs["flytekit"].append(asyncio.run(
                    bench_raw("flytekit pyflyte serve connector", fk_port, fk_proc.pid, args)))
            runs["client"].append(asyncio.run(
                bench_transport("ours (GrpcTransport client)", ours_port, ours_proc.pid, args)))
    report(args, {k: merged(v) for k, v in runs.items() if v})


def report(args: argparse.Namespace, results: dict[str, Result]) -> None:
    ours, client, theirs = results["ours"], results["client"], results.get("flytekit")
    print(f"\nGetTask, {args.concurrency} in-flight callers, {args.rounds} x {args.seconds:g} s interleaved "
          f"({os.cpu_count()} CPUs; client and server share them)\n")
    print(HEADER)
    for result in (ours, theirs, client):
        if result is not None:
            print(result.row())
    print()
    if theirs is not None:
        print(f"ours/flytekit: throughput {ours.throughput / theirs.throughput:.2f}x, "
              f"p50 latency {theirs.pct(0.5) / ours.pct(0.5):.2f}x lower, "
              f"p99 latency {theirs.pct(0.99) / ours.pct(0.99):.2f}x lower, "
              f"server CPU per call {theirs.cpu_per_call / ours.cpu_per_call:.2f}x less")
    overhead = statistics.median(client.latencies) - statistics.median(ours.latencies)
    print(f"GrpcTransport vs raw stubs (our server): {client.throughput / ours.throughput:.2f}x throughput, "
          f"{overhead * 1e3:+.2f} ms p50")


if __name__ == "__main__":
    main()
