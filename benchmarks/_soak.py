"""The soak shared by ``bench_soak.py`` (10 minutes) and the CI test (30 s): keep N runs in flight, count losses.

Each job is a ``TimerConnector`` job that ends at a known moment, so finish-to-seen lag can be measured.
"""

from __future__ import annotations

import array
import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import psutil
from _common import TimerConnector

from connector_nb import ConnectorRegistry, PollPolicy
from connector_nb.session import AsyncSession

LAG_SAMPLE = 50_000


@dataclass
class SoakResult:
    """What a soak saw: launches, finishes, losses, memory over time, lag."""

    launched: int = 0
    finished: int = 0
    max_tracked: int = 0
    rss_mib: list[tuple[float, float]] = field(default_factory=list)
    #: A uniform sample of finish-to-seen lags, in memory taken up front: a list of every lag would itself grow
    #: RSS by ~32 bytes per run (5 MiB in 5 minutes) and read as a leak.
    lags: array.array[float] = field(default_factory=lambda: array.array("d", bytes(8 * LAG_SAMPLE)))
    lag_count: int = 0
    seconds: float = 0.0
    errors: list[BaseException] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Launched runs that never reached a terminal phase."""
        return self.launched - self.finished

    def add_lag(self, seconds: float) -> None:
        """Keep ``seconds`` in the sample (reservoir sampling: every lag has the same chance to be kept)."""
        self.lag_count += 1
        slot = self.lag_count - 1 if self.lag_count <= LAG_SAMPLE else random.randrange(self.lag_count)
        if slot < LAG_SAMPLE:
            self.lags[slot] = seconds

    def lag(self, q: float) -> float:
        """A quantile of finish-to-seen lag, in seconds."""
        kept = self.lags[:min(self.lag_count, LAG_SAMPLE)]
        return statistics.quantiles(kept, n=100)[int(q * 100) - 1] if len(kept) > 1 else 0.0


async def soak(seconds: float, in_flight: int, *, journal: Any = False, retain: int = 1000,
               job_seconds: tuple[float, float] = (2.0, 6.0), sample_every: float = 30.0,
               report: Callable[[str], None] | None = None) -> SoakResult:
    """Launch runs for ``seconds`` keeping about ``in_flight`` live, then wait for all of them."""
    result, process = SoakResult(), psutil.Process()
    policy = PollPolicy(first_interval=0.05, growth=1.45, max_interval=0.5, jitter=0.1)
    slots = asyncio.Semaphore(in_flight)
    async with AsyncSession(registry=ConnectorRegistry([TimerConnector()]), poll=policy, journal=journal,
                            retain=retain) as session:

        async def one() -> None:
            try:
                if result.errors:
                    return
                run = await session.launch("timer", seconds=random.uniform(*job_seconds))
                result.launched += 1
                await run.wait_async()
                result.finished += 1
                result.add_lag(time.time() - json.loads(run.resource_meta)["ends_at"])
            except Exception as e:  # kept and reported: a soak must not hide a failing launch
                result.errors.append(e)
            finally:
                slots.release()

        start = next_sample = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        while time.monotonic() - start < seconds and not result.errors:
            await slots.acquire()
            task = asyncio.get_running_loop().create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            result.max_tracked = max(result.max_tracked, len(session.runs))
            if time.monotonic() >= next_sample:
                elapsed = time.monotonic() - start
                result.rss_mib.append((elapsed, process.memory_info().rss / 2**20))
                if report:
                    report(f"t={elapsed:5.0f}s launched={result.launched} finished={result.finished} "
                           f"in flight={len(tasks)} tracked={len(session.runs)} RSS={result.rss_mib[-1][1]:.1f} MiB")
                next_sample += sample_every
        await asyncio.gather(*tasks)
        result.seconds = time.monotonic() - start
        result.max_tracked = max(result.max_tracked, len(session.runs))
    return result
