"""Time from ``kill -9`` of a kernel to all of its runs reattached in a new kernel (journal on by default).

Prints: runs launched, time to list them (``recover()``), time to reattach them all, and the total from
the kill to the last reattach (kernel start included, since a user must start one).
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from typing import Any

from jupyter_client.manager import start_new_kernel


def run(client: Any, code: str, timeout: float = 300) -> str:
    """Execute ``code`` in the kernel; return its stdout."""
    msg_id, out = client.execute(code), ""
    while True:
        msg = client.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out += msg["content"]["text"]
        elif msg["msg_type"] == "error":
            raise RuntimeError("\n".join(msg["content"]["traceback"]))
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return out


def measure(n: int) -> None:
    """Launch ``n`` sleep runs, kill -9 the kernel, reattach them all in a new one."""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "CONNECTOR_NB_HOME": home}
        km, client = start_new_kernel(kernel_name="python3", env=env)
        run(client, f"from connector_nb import Session\ns = Session()\n"
                    f"runs = s.launch_many('sleep', [{{'seconds': 60}}] * {n})")
        client.stop_channels()
        killed = time.perf_counter()
        os.kill(km.provisioner.process.pid, signal.SIGKILL)
        km2, client2 = start_new_kernel(kernel_name="python3", env=env)
        started = time.perf_counter() - killed
        out = run(client2, "import json, time\nfrom connector_nb import Session\ns = Session()\n"
                           "t0 = time.perf_counter(); frame = s.recover(); t1 = time.perf_counter()\n"
                           "runs = s.reattach_all(); t2 = time.perf_counter()\n"
                           "print(json.dumps([len(frame), len(runs), t1 - t0, t2 - t1]))\n"
                           "s.close(cancel_running=True)")
        total = time.perf_counter() - killed
        listed, reattached, list_s, reattach_s = json.loads(out.strip().splitlines()[-1])
        client2.stop_channels()
        km2.shutdown_kernel(now=True)
    print(f"{n:>5} runs: listed {listed} in {list_s * 1000:.0f} ms, reattached {reattached} in "
          f"{reattach_s * 1000:.0f} ms; kill -9 -> all reattached {total:.2f} s (new kernel start {started:.2f} s)")


if __name__ == "__main__":
    for n in (20, 1000):
        measure(n)
