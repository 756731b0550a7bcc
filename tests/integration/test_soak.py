"""A short soak in CI: 1,000 runs in flight for 30 s. Nothing is lost and the retention limit holds."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _soak import soak


@pytest.mark.timeout(240)
def test_thousand_in_flight_for_thirty_seconds_loses_nothing_and_retention_holds(tmp_path):
    retain = 200
    result = asyncio.run(soak(30, 1000, journal=str(tmp_path / "journal.sqlite3"), retain=retain,
                              job_seconds=(0.5, 2.0), sample_every=5, report=print))
    print(f"soak: launched {result.launched}, finished {result.finished}, max tracked {result.max_tracked}, "
          f"lag p50 {result.lag(0.5) * 1000:.0f} ms p99 {result.lag(0.99) * 1000:.0f} ms, "
          f"RSS {[round(m) for _, m in result.rss_mib]} MiB")
    assert not result.errors, result.errors[:3]
    assert result.launched > 1000 and result.lost == 0
    # Live runs (at most 1,000) plus the retained finished ones: never the whole history.
    assert result.max_tracked <= 1000 + retain
