"""Soak: ~2,000 runs in flight at >= 500 launches/s for 10 minutes (``SOAK_SECONDS`` overrides).

Prints lost runs (target 0), RSS every 30 s (target: flat within 10% after warm-up) and finish-to-seen
lag p50/p99, with the journal on (the default) and off.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _soak import soak


def main() -> None:
    seconds = float(os.environ.get("SOAK_SECONDS", 600))
    for journal in (True, False):
        with tempfile.TemporaryDirectory() as home:
            os.environ["CONNECTOR_NB_HOME"] = home
            print(f"-- journal {'on' if journal else 'off'}: {seconds:.0f} s, 2,000 in flight")
            # jobs of 1.5-5.5 s (3.5 s mean, plus ~0.25 s to be seen done): 2,000 in flight turn over >= 500/s
            r = asyncio.run(soak(seconds, 2000, journal=None if journal else False, job_seconds=(1.5, 5.5),
                                 report=print))
            warm = [m for t, m in r.rss_mib if t >= 60] or [m for _, m in r.rss_mib]
            growth = (warm[-1] - warm[0]) / warm[0] * 100 if warm else 0.0
            print(f"launched {r.launched} ({r.launched / r.seconds:.0f}/s), lost {r.lost}, "
                  f"max tracked {r.max_tracked}, RSS after warm-up {warm[0]:.1f} -> {warm[-1]:.1f} MiB "
                  f"({growth:+.1f}%), lag p50 {r.lag(0.5) * 1000:.0f} ms p99 {r.lag(0.99) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
