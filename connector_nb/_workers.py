"""Worker threads for blocking (``def``) connector methods.

Unlike ``ThreadPoolExecutor``, a hung call can neither starve the others nor keep the interpreter from
exiting: threads are daemons, idle ones are reused, and a new one is started whenever none is idle.
How many calls may run at once is bounded by the caller (``LocalTransport``'s slots), and a call that
passes its deadline gives its slot back while its thread is left to finish on its own.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from typing import Any, Callable

#: Seconds an idle worker waits for work before it exits.
IDLE_EXIT = 30.0


class WorkerPool:
    """Daemon threads that run submitted callables; grows when all are busy, shrinks when idle."""

    def __init__(self, name: str = "connector-nb-worker") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None] = \
            queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0
        self._closed = False

    @property
    def threads(self) -> int:
        """Worker threads alive now (busy, hung or idle)."""
        return self._threads

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run ``fn()`` in a worker thread; returns its future."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is shut down")
            self._jobs.put((fn, future))
            if self._idle:
                self._idle -= 1  # an idle worker will take it
            else:
                self._threads += 1
                threading.Thread(target=self._work, name=f"{self._name}-{self._threads}", daemon=True).start()
        return future

    def shutdown(self) -> None:
        """Let idle workers exit; calls still running finish on their own (nobody waits for them)."""
        with self._lock:
            self._closed = True
            for _ in range(self._threads):
                self._jobs.put(None)

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=IDLE_EXIT)
            except queue.Empty:
                with self._lock:
                    if self._idle and self._jobs.empty():
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue
            if job is None:
                with self._lock:
                    self._threads -= 1
                return
            fn, future = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as e:  # delivered to the awaiting caller
                    future.set_exception(e)
            with self._lock:
                self._idle += 1
