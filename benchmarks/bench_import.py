"""Import time of ``connector_nb`` in a fresh interpreter, and which heavy modules it pulls in."""

from __future__ import annotations

import statistics
import subprocess
import sys

HEAVY = ("pandas", "ipywidgets", "grpc", "flyteidl", "google.protobuf", "matplotlib")
PROBE = (
    "import time, sys; t = time.perf_counter(); import connector_nb; d = time.perf_counter() - t; "
    f"print(d, ','.join(m for m in {HEAVY!r} if m in sys.modules))"
)


def main() -> None:
    times, heavy = [], ""
    for _ in range(15):
        out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
        times.append(float(out[0]))
        heavy = out[1] if len(out) > 1 else ""
    whole = []
    for _ in range(5):
        t = subprocess.run([sys.executable, "-c", "import time; t=time.perf_counter(); import connector_nb; "
                            "print(time.perf_counter()-t)"], capture_output=True, text=True, check=True)
        whole.append(float(t.stdout))
    proc = []
    for _ in range(5):
        start = __import__("time").perf_counter()
        subprocess.run([sys.executable, "-c", "import connector_nb"], check=True)
        proc.append(__import__("time").perf_counter() - start)
    print(f"import connector_nb: median {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms "
          f"(15 fresh interpreters)")
    print(f"python -c 'import connector_nb' whole process: median {statistics.median(proc) * 1000:.0f} ms")
    print(f"heavy modules imported: {heavy or 'none'}")


if __name__ == "__main__":
    main()
