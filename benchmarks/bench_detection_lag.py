"""Detection lag: time from a job becoming terminal to ``wait()`` returning, and the gets it cost.

Compares the default adaptive PollPolicy with fixed 1 s polling (flytekit's local executor) and fixed
3 s polling (Flyte 2's). Jobs of 0.2 s, 2 s and 20 s run concurrently; each setting is repeated.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import TimerConnector

from connector_nb import ConnectorRegistry, PollPolicy, Session

DURATIONS = (0.2, 2.0, 20.0)
REPEATS = 5


def measure(policy: PollPolicy) -> dict[float, tuple[list[float], list[int]]]:
    results: dict[float, tuple[list[float], list[int]]] = {d: ([], []) for d in DURATIONS}
    with Session(registry=ConnectorRegistry([TimerConnector()]), poll=policy) as session:
        runs = [(d, session.launch("timer", seconds=d)) for d in DURATIONS for _ in range(REPEATS)]
        for duration, run in runs:
            run.wait()
            seen = run.ended_at.timestamp()
            ends_at = session.get_run(run.run_id).resource_meta
            lag = seen - float(__import__("json").loads(ends_at)["ends_at"])
            results[duration][0].append(lag)
            results[duration][1].append(run.get_calls)
    return results


def main() -> None:
    settings = {"adaptive (default)": PollPolicy(), "fixed 1 s (flytekit local)": PollPolicy.fixed(1.0),
                "fixed 3 s (Flyte 2 local)": PollPolicy.fixed(3.0)}
    print(f"{'policy':<28} {'job':>6} {'lag median':>11} {'lag max':>9} {'gets':>5}")
    for label, policy in settings.items():
        start = time.perf_counter()
        for duration, (lags, gets) in measure(policy).items():
            print(f"{label:<28} {duration:>5.1f}s {statistics.median(lags) * 1000:>9.0f}ms "
                  f"{max(lags) * 1000:>7.0f}ms {max(gets):>5}")
        print(f"{'':<28} (wall {time.perf_counter() - start:.1f} s, {REPEATS} runs per job length)")


if __name__ == "__main__":
    main()
