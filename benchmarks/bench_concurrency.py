"""Concurrency: N runs at once of a connector that finishes on its third get; wall time and CPU per poll.

Also 1,000 concurrent 2-second jobs (flytekit's local executor runs them one after another: ~2,000 s).
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import ThreeGetsConnector, TimerConnector

from connector_nb import ConnectorRegistry, PollPolicy
from connector_nb.session import AsyncSession


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def three_gets(n: int, journal: bool) -> float:
    connector = ThreeGetsConnector()
    policy = PollPolicy(first_interval=0.05, growth=1.45, jitter=0.1)
    async with AsyncSession(registry=ConnectorRegistry([connector]), poll=policy,
                            journal=None if journal else False) as session:
        wall, cpu0 = time.perf_counter(), cpu()
        runs = await asyncio.gather(*(session.launch("three_gets") for _ in range(n)))
        launched, cpu1 = time.perf_counter() - wall, cpu()
        await asyncio.gather(*(r.wait_async() for r in runs))
        wall, poll_cpu = time.perf_counter() - wall, cpu() - cpu1
    gets = connector.total_gets
    label, per_launch = "on " if journal else "off", (cpu1 - cpu0) / n * 1e6
    print(f"{n:>6} runs, journal {label}: launched in {launched:5.2f} s ({per_launch:4.0f} us CPU per launch), "
          f"all SUCCEEDED after {wall:5.2f} s; {gets} gets, {poll_cpu / gets * 1e6:4.1f} us CPU per poll")
    return wall


async def two_second_jobs(n: int) -> None:
    async with AsyncSession(registry=ConnectorRegistry([TimerConnector()])) as session:
        wall = time.perf_counter()
        runs = await asyncio.gather(*(session.launch("timer", seconds=2.0) for _ in range(n)))
        await asyncio.gather(*(r.wait_async() for r in runs))
        wall = time.perf_counter() - wall
    gets = sum(r.get_calls for r in runs)
    print(f"{n:>6} concurrent 2 s jobs: all SUCCEEDED in {wall:.2f} s wall ({gets / n:.1f} gets per run); "
          f"sequential fixed-1s polling would take ~{n * 2.0:.0f} s")


def journal_cost(n: int, repeats: int = 5) -> None:
    """Journal off and on, alternating (a 2-core VM's noise hits both alike); the medians and their ratio."""
    walls: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for journal in (False, True):
            walls[journal].append(asyncio.run(three_gets(n, journal)))
    off, on = statistics.median(walls[False]), statistics.median(walls[True])
    print(f"{n:>6} runs, median of {repeats}: journal off {off:.2f} s, on {on:.2f} s ({(on / off - 1) * 100:+.0f}%)")


def main() -> None:
    for n in (1_000, 10_000):
        journal_cost(n)
    asyncio.run(two_second_jobs(1_000))


if __name__ == "__main__":
    main()
