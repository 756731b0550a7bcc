"""Journal cost: what the caller pays per ``transition()`` / ``intent()``, and sustained throughput with batching.

Figures are printed, not asserted. The target: ~1,000 launches/s with ~5 transitions each must be easy.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))
from connector_nb.journal import Journal

TRANSITIONS = 5


def percentiles(samples_ns: list[int]) -> str:
    """p50 / p99 / max of ``samples_ns``, in microseconds."""
    ordered = sorted(samples_ns)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000  # noqa: E731
    return f"p50 {p(0.5):7.1f} µs   p99 {p(0.99):7.1f} µs   max {ordered[-1] / 1000:8.1f} µs"


def launch(journal: Journal, run_id: str, now: datetime) -> None:
    journal.intent(run_id=run_id, task_type="bench", version=1, target="local", inputs={"n": 1, "api_key": "k3y"},
                   template=b"", output_prefix="/tmp/out", started_at=now)


def caller_cost(folder: Path) -> None:
    """Time each call on the caller thread (the writer thread commits in the background)."""
    now = datetime.now(timezone.utc)
    with Journal(folder / "caller.sqlite3") as journal:
        intents = []
        for i in range(3000):
            start = time.perf_counter_ns()
            launch(journal, f"r{i}", now)
            intents.append(time.perf_counter_ns() - start)
        calls = []
        for i in range(100_000):
            start = time.perf_counter_ns()
            journal.transition(f"r{i % 3000}", "RUNNING", "working", now)
            calls.append(time.perf_counter_ns() - start)
        start = time.perf_counter()
        journal.flush()
        drained = time.perf_counter() - start
    print(f"intent()     (committed before it returns, n=3,000):   {percentiles(intents)}")
    print(f"transition() (queued, n=100,000):                       {percentiles(calls)}   "
          f"mean {statistics.fmean(calls) / 1000:.2f} µs")
    print(f"  then flush() of the backlog: {drained * 1000:.0f} ms")


def sustained(folder: Path, seconds: float = 5.0) -> None:
    """Launch as fast as one thread can: intent + created + 5 transitions each; count what is committed."""
    now = datetime.now(timezone.utc)
    with Journal(folder / "sustained.sqlite3") as journal:
        start, launches = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            run_id = f"s{launches}"
            launch(journal, run_id, now)
            journal.created(run_id, b'{"job": 1}')
            for phase in ("RUNNING",) * (TRANSITIONS - 1) + ("SUCCEEDED",):
                journal.transition(run_id, phase, "", now)
            launches += 1
        journal.flush()
        elapsed = time.perf_counter() - start
        rows = sqlite3.connect(journal.path).execute("SELECT count(*) FROM transitions").fetchone()[0]
        wal = Path(f"{journal.path}-wal").stat().st_size / 2**20
        size = journal.path.stat().st_size / 2**20
    print(f"sustained, one thread flat out for {seconds:g} s: {launches / elapsed:,.0f} launches/s, "
          f"{rows / elapsed:,.0f} transition rows/s committed ({rows:,} rows, {journal.dropped} dropped); "
          f"database {size:.1f} MiB, WAL {wal:.1f} MiB (checkpointed by the writer thread)")


def paced(folder: Path, rate: int = 1000, seconds: float = 5.0) -> None:
    """1,000 launches/s with 5 transitions each: how busy the caller is, and the backlog left at the end."""
    now = datetime.now(timezone.utc)
    with Journal(folder / "paced.sqlite3") as journal:
        start, busy, launches, slowest = time.perf_counter(), 0.0, 0, 0.0
        while (elapsed := time.perf_counter() - start) < seconds:
            if launches >= elapsed * rate:
                time.sleep(0.001)  # pacing the load generator, not waiting on a result
                continue
            t0 = time.perf_counter()
            run_id = f"p{launches}"
            launch(journal, run_id, now)
            journal.created(run_id, b'{"job": 1}')
            for phase in ("RUNNING",) * (TRANSITIONS - 1) + ("SUCCEEDED",):
                journal.transition(run_id, phase, "", now)
            spent = time.perf_counter() - t0
            busy, slowest, launches = busy + spent, max(slowest, spent), launches + 1
        t0 = time.perf_counter()
        journal.flush()
        backlog = time.perf_counter() - t0
    print(f"paced at {rate:,} launches/s x {TRANSITIONS} transitions for {seconds:g} s: {launches:,} launches, "
          f"caller thread busy {100 * busy / seconds:.1f}% of the time ({1e6 * busy / launches:.0f} µs per launch, "
          f"slowest {slowest * 1000:.1f} ms), backlog at the end flushed in {backlog * 1000:.0f} ms")


def group_commit(folder: Path, n: int = 5000) -> None:
    """``intent_async`` + ``created_async`` for ``n`` launches awaited together: they share commits."""
    now = datetime.now(timezone.utc)

    async def one(journal: Journal, i: int) -> None:
        await journal.intent_async(run_id=f"g{i}", task_type="bench", version=1, target="local", inputs={"n": i},
                                   template=b"", output_prefix="", started_at=now)
        await journal.created_async(f"g{i}", b'{"job": 1}')

    async def main(journal: Journal) -> float:
        start = time.perf_counter()
        await asyncio.gather(*(one(journal, i) for i in range(n)))
        return time.perf_counter() - start

    with Journal(folder / "group.sqlite3") as journal:
        elapsed = asyncio.run(main(journal))
    print(f"{n:,} launches awaited together (intent_async + created_async, both committed): "
          f"{n / elapsed:,.0f} launches/s ({1e6 * elapsed / n:.0f} µs each)")


def unbatched(folder: Path, n: int = 3000) -> None:
    """For contrast: one commit per transition row on the caller thread (what batching avoids)."""
    db = sqlite3.connect(folder / "unbatched.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE t (run_id TEXT, phase TEXT, message TEXT, at TEXT)")
    samples = []
    for i in range(n):
        start = time.perf_counter_ns()
        db.execute("INSERT INTO t VALUES (?, ?, ?, ?)", (f"r{i}", "RUNNING", "", "2026-01-01T00:00:00+00:00"))
        samples.append(time.perf_counter_ns() - start)
    db.close()
    print(f"for contrast, one commit per row on the caller (n={n:,}):   {percentiles(samples)}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"SQLite {sqlite3.sqlite_version}, journal files in {tmp}")
        caller_cost(folder)
        unbatched(folder)
        sustained(folder)
        paced(folder)
        group_commit(folder)


if __name__ == "__main__":
    main()
