"""How a run is polled: ``PollPolicy`` (intervals, deadlines, timeout) and the ``Poller`` that drives one run.

Intervals grow geometrically from ``first_interval`` to ``max_interval``, so the poll count grows with
the log of a job's duration up to the cap: a 0.2 s job is seen done within ~0.1 s, a 20 s job costs
~15 gets and is seen done within one capped interval (5 s), and a long job costs one get per 5 s.

Every call has a deadline (``call_timeout``, ``create_timeout``) and ``timeout`` is a hard bound on the whole
run that fires even while a ``get`` hangs. A service that is down or restarting never ends polling: the run
shows "unreachable since ..." and resumes by itself. Only the connector's own errors count toward
``max_get_errors``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Protocol, TypeVar

from .errors import CallTimeoutError, ServiceUnavailableError

log = logging.getLogger(__name__)
_timeout = getattr(asyncio, "timeout", None)
T = TypeVar("T")


@dataclass(frozen=True)
class PollPolicy:
    """Adaptive polling with jitter, per-call deadlines, an optional run timeout, and error tolerance."""

    first_interval: float = 0.05
    growth: float = 1.45
    max_interval: float = 5.0
    #: Each interval is multiplied by a uniform factor in [1 - jitter, 1 + jitter] to spread many runs.
    jitter: float = 0.1
    #: Seconds after launch after which the run is cancelled (``delete``) and marked ABORTED.
    timeout: float | None = None
    #: Consecutive connector errors in ``get`` tolerated before polling stops and the run shows the error.
    max_get_errors: int = 5
    #: First wait after a failed ``get``; doubles on each further failure, capped at ``max_interval``.
    error_backoff: float = 0.2
    #: Deadline of each ``get``, ``delete``, metrics and logs call; a call past it is an error on the run.
    call_timeout: float = 30.0
    #: Deadline of ``create``; past it the job's existence is unknown (it is never re-sent).
    create_timeout: float = 120.0

    def __post_init__(self) -> None:
        checks = [
            (self.first_interval > 0, "first_interval must be > 0"),
            (self.growth >= 1, "growth must be >= 1"),
            (self.max_interval >= self.first_interval, "max_interval must be >= first_interval"),
            (0 <= self.jitter < 1, "jitter must be in [0, 1)"),
            (self.timeout is None or self.timeout > 0, "timeout must be None or > 0"),
            (self.max_get_errors >= 1, "max_get_errors must be >= 1"),
            (self.error_backoff > 0, "error_backoff must be > 0"),
            (self.call_timeout > 0, "call_timeout must be > 0"),
            (self.create_timeout > 0, "create_timeout must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid PollPolicy: {message}")

    def next_interval(self, previous: float | None) -> float:
        """The un-jittered interval after ``previous`` (None for the first poll)."""
        if previous is None:
            return self.first_interval
        return min(previous * self.growth, self.max_interval)

    def backoff(self, errors: int) -> float:
        """Wait after the ``errors``-th consecutive failed ``get`` (or unreachable service)."""
        return float(min(self.error_backoff * 2 ** (errors - 1), self.max_interval))

    def jittered(self, interval: float, rng: random.Random | None = None) -> float:
        """``interval`` spread by the jitter factor, so many runs do not poll in lockstep."""
        if not self.jitter:
            return interval
        return interval * (rng or random).uniform(1 - self.jitter, 1 + self.jitter)

    @classmethod
    def fixed(cls, interval: float, **kwargs: Any) -> PollPolicy:
        """A constant interval (e.g. for comparing with flytekit's fixed 1 s sleep)."""
        return cls(first_interval=interval, growth=1.0, max_interval=interval, jitter=0.0, **kwargs)


async def with_deadline(call: Awaitable[T], timeout: float | None, method: str, task_type: str) -> T:
    """Await ``call`` for at most ``timeout`` seconds; past it raise :class:`CallTimeoutError` naming the call."""
    if timeout is None:
        return await call
    try:
        if _timeout is not None:  # 3.11+: no extra task per call, unlike wait_for (this runs on every poll)
            async with _timeout(max(timeout, 0.0)):
                return await call
        return await asyncio.wait_for(call, max(timeout, 0.0))
    except asyncio.TimeoutError:
        raise CallTimeoutError(method, task_type, timeout) from None


class Polled(Protocol):
    """What a Poller drives (``run.Run``): it polls, and is told what happened."""

    run_id: str
    policy: PollPolicy
    _loop: asyncio.AbstractEventLoop
    _started: float

    @property
    def done(self) -> bool:
        """Whether polling has ended."""

    async def _poll_once(self, timeout: float) -> None:
        """One get, applied to the run."""

    async def _time_out(self) -> None:
        """Cancel the run: its PollPolicy.timeout passed."""

    def _unreachable(self, error: Exception) -> None:
        """The service did not answer."""

    def _get_failed(self, error: Exception, count: int) -> None:
        """The connector's get failed (the count-th time in a row)."""


class Poller:
    """The loop that drives one run: ``get`` on the policy's schedule until the run is terminal.

    It owns timing only; what a result or an error means for the run is the run's business
    (``_apply``, ``_get_failed``, ``_unreachable``, ``_time_out``).
    """

    def __init__(self, run: Polled) -> None:
        self.run = run
        self.policy = run.policy
        self.task: asyncio.Task[None] = run._loop.create_task(self._main(), name=f"poll {run.run_id}")

    def stop(self) -> None:
        """Cancel the loop (unless called from inside it, where returning ends it)."""
        if self.task is not asyncio.current_task():
            self.task.cancel()

    def _deadline(self) -> float | None:
        """Monotonic time at which ``PollPolicy.timeout`` ends the run, if any."""
        timeout = self.policy.timeout
        return None if timeout is None else self.run._started + timeout

    def _delay(self, interval: float | None, errors: int, outages: int) -> tuple[float, float | None]:
        if errors or outages:
            return self.policy.backoff(max(errors, outages)), interval
        interval = self.policy.next_interval(interval)
        return self.policy.jittered(interval), interval

    async def _main(self) -> None:
        interval: float | None = None
        errors = outages = 0
        deadline = self._deadline()
        while not self.run.done:
            delay, interval = self._delay(interval, errors, outages)
            budget = self.policy.call_timeout
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= delay:
                    await asyncio.sleep(max(0.0, left))
                    await self.run._time_out()
                    return
                budget = min(budget, left - delay)
            await asyncio.sleep(delay)
            try:
                await self.run._poll_once(budget)
                errors = outages = 0
            except asyncio.CancelledError:
                raise
            except ServiceUnavailableError as e:
                outages += 1
                self.run._unreachable(e)
            except Exception as e:
                if deadline is not None and isinstance(e, CallTimeoutError) and time.monotonic() >= deadline - 0.01:
                    await self.run._time_out()
                    return
                errors += 1
                self.run._get_failed(e, errors)


__all__ = ["PollPolicy", "Polled", "Poller", "with_deadline"]
