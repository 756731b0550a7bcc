"""Memory per tracked run: 10,000 live runs (polling, not finished).

RSS is measured in a pass without tracemalloc (which itself costs memory); the Python heap in another.
"""

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


async def tracked(trace: bool) -> int:
    """Bytes added by N live runs: traced heap if ``trace``, else RSS."""
    process = psutil.Process()
    async with AsyncSession(registry=ConnectorRegistry([TimerConnector()]), poll=PollPolicy(first_interval=0.5)) as s:
        await s.launch("timer", seconds=3600)  # warm caches so they are not counted per run
        gc.collect()
        if trace:
            tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0] if trace else process.memory_info().rss
        await asyncio.gather(*(s.launch("timer", seconds=3600) for _ in range(N)))
        await asyncio.sleep(1.0)  # every run has polled at least once
        gc.collect()
        after = tracemalloc.get_traced_memory()[0] if trace else process.memory_info().rss
        tracemalloc.stop()
        await s.cancel_all()
    return after - before


def main() -> None:
    rss = asyncio.run(tracked(trace=False))
    heap = asyncio.run(tracked(trace=True))
    print(f"{N} tracked runs: RSS +{rss / 2**20:.1f} MiB ({rss / N / 1024:.2f} KiB/run); "
          f"Python heap +{heap / 2**20:.1f} MiB ({heap / N / 1024:.2f} KiB/run)")


if __name__ == "__main__":
    main()
