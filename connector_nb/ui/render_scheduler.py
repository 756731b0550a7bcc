"""Coalesce many change notifications into few re-renders, on one shared daemon thread.

Engine-thread callbacks only call :meth:`Throttle.mark` (a lock and a heap push), so a poll storm costs the
engine almost nothing. The shared flusher thread re-renders each dirty view at most once per ``interval``
inside ``hold_sync`` so one render is one comm message per changed widget. The state is read at render time,
so the last mark after a terminal transition always produces a render showing it: nothing final is dropped.
All widget updates that do not come from the user's own click happen on this one thread.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import threading
import time
from typing import Any, Callable, Iterable, Iterator

log = logging.getLogger(__name__)

#: Default cap: 10 renders per second per view.
DEFAULT_INTERVAL = 0.1


class _Flusher:
    """The single daemon thread running due renders, ordered by due time."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Throttle]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._busy = 0

    def schedule(self, throttle: Throttle, due: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), throttle))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._main, name="connector-nb-ui", daemon=True)
                self._thread.start()
            self._cond.notify()

    def idle(self, timeout: float = 10.0, horizon: float = 0.25) -> bool:
        """Wait until no render is running or due within ``horizon`` seconds (later ticks are ignored)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy or (self._heap and self._heap[0][0] <= time.monotonic() + horizon):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.02))
            return True

    def _main(self) -> None:
        while True:
            with self._cond:
                throttle = self._next_due()
                self._busy += 1
            try:
                throttle._run()
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _next_due(self) -> Throttle:
        while True:
            if not self._heap:
                self._cond.wait()
                continue
            due = self._heap[0][0]
            now = time.monotonic()
            if due <= now:
                return heapq.heappop(self._heap)[2]
            self._cond.wait(due - now)


FLUSHER = _Flusher()


class Throttle:
    """Render ``render()`` at most every ``interval`` seconds after :meth:`mark`; ``hold`` widgets batch."""

    def __init__(
        self, render: Callable[[], None], hold: Callable[[], Iterable[Any]] = tuple,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self.render = render
        self.hold = hold
        self.interval = interval
        self.renders = 0
        self.closed = False
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()  # flush() on the kernel thread vs the UI thread
        self._scheduled_for: float | None = None
        self._last = -float("inf")

    def mark(self, delay: float = 0.0) -> None:
        """Ask for a render: now-ish (respecting the cap) or after ``delay`` seconds. Cheap; any thread."""
        if self.closed:
            return
        due = max(time.monotonic() + delay, self._last + self.interval)
        with self._lock:
            if self._scheduled_for is not None and self._scheduled_for <= due:
                return  # an earlier render will already show this change
            self._scheduled_for = due
        FLUSHER.schedule(self, due)

    def flush(self) -> None:
        """Render now on the calling thread (e.g. right after construction)."""
        with self._lock:
            self._scheduled_for = None
        self._render()

    def close(self) -> None:
        """Stop rendering."""
        self.closed = True

    def _run(self) -> None:
        with self._lock:
            if self._scheduled_for is None or self._scheduled_for > time.monotonic():
                return  # stale heap entry: flushed already, or superseded by an earlier one
            self._scheduled_for = None
        if not self.closed:
            self._render()

    def _render(self) -> None:
        self._last = time.monotonic()
        try:
            with self._render_lock, held(self.hold()):
                self.render()
                self.renders += 1
        except Exception:  # a broken view must not stop the other views' updates
            log.exception("render of %r failed", self.render)


class ThrottledView:
    """Mixin of the live widgets: a ``Throttle`` in ``_throttle`` and a run/session ``_unsubscribe``."""

    _throttle: Throttle
    _unsubscribe: Callable[[], Any]

    def render_now(self) -> None:
        """Render synchronously on the calling thread (tests, or after changing options)."""
        self._throttle.flush()

    @property
    def renders(self) -> int:
        """How many renders this view has made."""
        return self._throttle.renders

    def _stop_updates(self) -> bool:
        """Stop redrawing and observing; False when construction never got that far."""
        throttle = getattr(self, "_throttle", None)
        if throttle is None:
            return False
        throttle.close()
        self._unsubscribe()
        return True


@contextlib.contextmanager
def held(widgets: Iterable[Any]) -> Iterator[None]:
    """``hold_sync`` on every widget at once: each sends at most one update message on exit."""
    with contextlib.ExitStack() as stack:
        for widget in widgets:
            stack.enter_context(widget.hold_sync())
        yield


def wait_idle(timeout: float = 10.0, horizon: float = 0.25) -> bool:
    """Wait until every render due within ``horizon`` has run (for tests and benchmarks)."""
    return FLUSHER.idle(timeout, horizon)


__all__ = ["DEFAULT_INTERVAL", "Throttle", "held", "wait_idle"]
