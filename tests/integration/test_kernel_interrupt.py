"""A real kernel interrupt (SIGINT through jupyter_client) during ``run.wait()``.

The wait ends with one clear line; the run goes on (still polled) unless ``cancel_on_interrupt=True``.
"""

from __future__ import annotations

import pytest
from jupyter_client.manager import start_new_kernel
from kernel_cells import run_code

# Prints "waiting" once the kernel's main thread is blocked inside the wait (a condition, not a delay).
ANNOUNCE = """
import sys, threading
from connector_nb.testing import wait_until
def main_thread_in(name):
    frame = sys._current_frames().get(threading.main_thread().ident)
    while frame is not None and frame.f_code.co_name != name:
        frame = frame.f_back
    return frame is not None
def announce_when_waiting():
    def watch():
        wait_until(lambda: main_thread_in("run_blocking"), timeout=60, interval=0.005, what="the blocking wait")
        print("waiting", flush=True)
    threading.Thread(target=watch, daemon=True).start()
"""



@pytest.mark.kernel
def test_interrupt_during_wait_leaves_the_run_polling_then_cancel_on_interrupt_deletes():
    km, client = start_new_kernel(kernel_name="python3")
    try:
        run_code(client, ANNOUNCE + "from connector_nb import Session\nsession = Session()\n"
                         "run = session.launch('sleep', seconds=60)")
        out, errors = run_code(client, "announce_when_waiting()\nrun.wait()", interrupt_after="waiting", km=km)
        assert len(errors) == 1 and errors[0]["ename"] == "WaitInterrupted"
        assert len(errors[0]["traceback"]) == 1  # one clear line, no frames from concurrent.futures
        line = errors[0]["traceback"][0]
        assert "still" in line and "polled" in line and "run.cancel()" in line
        out, errors = run_code(client, "calls = run.get_calls\n"
                                       "wait_until(lambda: run.get_calls > calls, timeout=30, interval=0.05,\n"
                                       "           what='another get after the interrupt')\n"
                                       "print(run.live, run.get_calls > calls, run.done)")
        assert not errors and out.split() == ["True", "True", "False"]  # still QUEUED/RUNNING and still polled
        out, errors = run_code(client, "run.cancel()\nprint(run.phase)")
        assert not errors and out.strip() == "ABORTED"

        run_code(client, "run2 = session.launch('sleep', seconds=60)")
        out, errors = run_code(client, "announce_when_waiting()\nrun2.wait(cancel_on_interrupt=True)",
                               interrupt_after="waiting", km=km)
        assert errors and errors[0]["ename"] == "WaitInterrupted" and "cancelling" in errors[0]["traceback"][0]
        out, errors = run_code(client, "print(run2.wait(timeout=30).phase)\nsession.close()")
        assert not errors and out.strip() == "ABORTED"
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)
