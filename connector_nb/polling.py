"""PollPolicy: how often a run's ``get`` is called.

Intervals grow geometrically from ``first_interval`` to ``max_interval``, so the poll count grows with
the log of a job's duration up to the cap: a 0.2 s job is seen done within ~0.1 s, a 20 s job costs
~15 gets and is seen done within one capped interval (5 s), and a long job costs one get per 5 s.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class PollPolicy:
    """Adaptive polling with jitter, an optional timeout, and tolerance of transient ``get`` errors."""

    first_interval: float = 0.05
    growth: float = 1.45
    max_interval: float = 5.0
    #: Each interval is multiplied by a uniform factor in [1 - jitter, 1 + jitter] to spread many runs.
    jitter: float = 0.1
    #: Seconds after launch after which the run is cancelled (``delete``) and marked ABORTED.
    timeout: float | None = None
    #: Consecutive failed ``get`` calls tolerated before polling stops and the run shows the error.
    max_get_errors: int = 5
    #: First wait after a failed ``get``; doubles on each further failure, capped at ``max_interval``.
    error_backoff: float = 0.2

    def __post_init__(self) -> None:
        checks = [
            (self.first_interval > 0, "first_interval must be > 0"),
            (self.growth >= 1, "growth must be >= 1"),
            (self.max_interval >= self.first_interval, "max_interval must be >= first_interval"),
            (0 <= self.jitter < 1, "jitter must be in [0, 1)"),
            (self.timeout is None or self.timeout > 0, "timeout must be None or > 0"),
            (self.max_get_errors >= 1, "max_get_errors must be >= 1"),
            (self.error_backoff > 0, "error_backoff must be > 0"),
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
        """Wait after the ``errors``-th consecutive failed ``get``."""
        return min(self.error_backoff * 2 ** (errors - 1), self.max_interval)

    def jittered(self, interval: float, rng: random.Random = random._inst) -> float:  # type: ignore[attr-defined]
        if not self.jitter:
            return interval
        return interval * rng.uniform(1 - self.jitter, 1 + self.jitter)

    @classmethod
    def fixed(cls, interval: float, **kwargs: float | int | None) -> PollPolicy:
        """A constant interval (e.g. for comparing with flytekit's fixed 1 s sleep)."""
        return cls(first_interval=interval, growth=1.0, max_interval=interval, jitter=0.0, **kwargs)  # type: ignore[arg-type]
