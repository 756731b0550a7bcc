"""Memory per tracked run: 10,000 live runs (polling, not finished), measured with tracemalloc and RSS."""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from _common import TimerConnector

from connector_nb import ConnectorRegistry, PollPolicy
from connector_nb.session import AsyncSession

N = 10_000


async def main() -> None:
    process = psutil.Process()
    async with AsyncSession(registry=ConnectorRegistry([TimerConnector()]), poll=PollPolicy(first_interval=0.5)) as s:
        await s.launch("timer", seconds=3600)  # warm caches so they are not counted per run
        gc.collect()
        rss0 = process.memory_info().rss
        tracemalloc.start()
        snap0 = tracemalloc.take_snapshot()
        await asyncio.gather(*(s.launch("timer", seconds=3600) for _ in range(N)))
        await asyncio.sleep(1.0)  # every run has polled at least once
        gc.collect()
        snap1 = tracemalloc.take_snapshot()
        rss1 = process.memory_info().rss
        traced = sum(stat.size_diff for stat in snap1.compare_to(snap0, "filename"))
        tracemalloc.stop()
        await s.cancel_all()
    print(f"{N} tracked runs: Python heap +{traced / 2**20:.1f} MiB ({traced / N / 1024:.2f} KiB/run), "
          f"RSS +{(rss1 - rss0) / 2**20:.1f} MiB ({(rss1 - rss0) / N / 1024:.2f} KiB/run, includes tracemalloc)")


if __name__ == "__main__":
    asyncio.run(main())
