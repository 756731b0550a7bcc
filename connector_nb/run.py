"""``Run``: one launched task, kept live by its ``Poller``; ``Transition`` records; observers.

A run belongs to one loop (its session's). Its public methods serve sync and async callers alike
(dask's ``SyncMethodMixin``): on that loop they return awaitables, elsewhere they block; the ``*_async``
forms are awaitable from any loop. Each is written once, as a private coroutine, and made public by
``_engine.dual`` / ``_engine.bridged``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Generator, Iterable, Mapping, Protocol

from ._engine import bridged, dual, submit
from .connector import Resource, is_terminal, phase_rank
from .errors import ConnectorNbError, EngineError, PollingStoppedError
from .polling import Poller, PollPolicy, with_deadline
from .secrets import mask_error

if TYPE_CHECKING:
    import pandas as pd
    from flyteidl.core import tasks_pb2

    from .logs import Logs
    from .transports.base import TaskCategory, Transport

log = logging.getLogger(__name__)
Observer = Callable[["Run"], None]


def utcnow() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Transition:
    """A recorded change of a run: its phase and message at a time, with links and custom info."""

    phase: str
    message: str
    at: datetime
    log_links: tuple[Any, ...] = ()
    custom_info: dict[str, Any] | None = None
    #: The raw Resource, kept for step-mode polls (each one is shown in the timeline).
    resource: Resource | None = field(default=None, repr=False, compare=False)
    #: Why this transition is odd: "backwards" (e.g. RUNNING -> QUEUED) or "after terminal"; empty when normal.
    flag: str = ""


class Observable:
    """Callbacks ``callback(run)`` called on the owner's loop after every change of a run."""

    _observers: list[Observer]

    def on_change(self, /, callback: Observer) -> Callable[[], None]:
        """Subscribe ``callback(run)``; returns a function that unsubscribes it."""
        self._observers.append(callback)
        return lambda: self._observers.remove(callback) if callback in self._observers else None


class RunOwner(Protocol):
    """What a run needs from its session (an ``AsyncSession``): its loop, transport and observers."""

    _loop: asyncio.AbstractEventLoop
    _observers: list[Observer]
    transport: Transport

    @property
    def public(self) -> Any:
        """The session the user holds."""

    def new_run_id(self, task_type: str, /) -> str:
        """A fresh run id for a task type."""


class WaitInterrupted(KeyboardInterrupt):
    """A wait was interrupted (Ctrl-C / kernel interrupt). The run itself goes on unless it was cancelled."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a traceback: one clear line is what the user needs.
        return [f"KeyboardInterrupt: {self}"]


class Run(Observable):
    """One launched task: its phase, transitions, latest resource and outputs, kept live by polling."""

    def __init__(
        self,
        session: RunOwner,
        category: TaskCategory,
        template: tasks_pb2.TaskTemplate,
        inputs: dict[str, Any],
        resource_meta: bytes,
        output_prefix: str,
        policy: PollPolicy,
        autopoll: bool = True,
        run_id: str | None = None,
        *,
        started_at: datetime | None = None,
        history: Iterable[Transition] = (),
    ) -> None:
        """Made by the session's ``launch`` or ``reattach``; not meant to be built by hand."""
        self._session = session
        self.category = category
        self.template = template
        self.inputs = inputs
        self.resource_meta = resource_meta
        self.output_prefix = output_prefix
        self.policy = policy
        self.autopoll = autopoll
        self.run_id = run_id or session.new_run_id(category.name)
        self.started_at = started_at or utcnow()
        self.ended_at: datetime | None = None
        self.resource: Resource | None = None
        self.transitions: list[Transition] = list(history)
        self.phase = self.transitions[-1].phase if self.transitions else "QUEUED"
        self.get_calls = 0
        #: The last exception from the connector or transport (kept for ``debug()``); None when healthy.
        self.error: BaseException | None = None
        self.polling_error: PollingStoppedError | None = None
        #: When the service stopped answering (polling goes on); None while it answers.
        self.unreachable_since: datetime | None = None
        #: Odd phase sequences seen, e.g. "RUNNING -> QUEUED (backwards)".
        self.flags: list[str] = [f"{t.phase} ({t.flag})" for t in self.transitions if t.flag]
        self._loop = session._loop
        self._started = time.monotonic() - (utcnow() - self.started_at).total_seconds()
        self._done = asyncio.Event()
        self._observers: list[Observer] = []
        self._poller: Poller | None = None
        self._outputs: dict[str, Any] | None = None
        #: How many transitions the session's journal has written.
        self._journaled = 0
        if not self.transitions:
            self._record(Resource(phase="QUEUED", message="created"))
        elif is_terminal(self.phase):
            self.ended_at = self.transitions[-1].at
            self._done.set()

    # -- state -----------------------------------------------------------------------------------
    @property
    def session(self) -> Any:
        """The session the user made (a ``Session``, or the ``AsyncSession`` when used directly)."""
        return self._session.public

    @property
    def transport(self) -> Transport:
        """The transport this run's calls go through."""
        return self._session.transport

    @property
    def task_type(self) -> str:
        """The task type name."""
        return self.category.name

    @property
    def version(self) -> int:
        """The task type version."""
        return self.category.version

    @property
    def message(self) -> str:
        """The latest message (the connector's, or ours while unreachable or before the first get)."""
        if self.unreachable_since is not None:
            return f"service unreachable since {self.unreachable_since:%H:%M:%S}, retrying"
        return self.resource.message if self.resource is not None else self.transitions[-1].message

    @property
    def done(self) -> bool:
        """Whether polling has ended: a terminal phase, or too many consecutive connector errors."""
        return self._done.is_set()

    @property
    def live(self) -> bool:
        """Whether the job may still be running (not terminal): it can be cancelled."""
        return not is_terminal(self.phase)

    @property
    def elapsed(self) -> float:
        """Seconds from launch to the end (or now)."""
        end = self.ended_at or utcnow()
        return (end - self.started_at).total_seconds()

    @property
    def log_links(self) -> list[Any]:
        """The latest log links (flyteidl ``TaskLog`` messages)."""
        return list(self.resource.log_links) if self.resource is not None else []

    @property
    def outputs(self) -> dict[str, Any]:
        """Outputs as Python values; structured datasets become DataFrames. Empty until there are any."""
        if self._outputs is None and self.resource is not None and self.resource.outputs is not None:
            self._outputs = _python_outputs(self.resource.outputs, self.template)
        return dict(self._outputs or {})

    def summary(self) -> dict[str, Any]:
        """One row of ``runs_frame()``."""
        return {"run_id": self.run_id, "task_type": self.task_type, "phase": self.phase,
                "started": self.started_at, "duration_s": round(self.elapsed, 3),
                "get_calls": self.get_calls, "message": self.message}

    def timeline(self) -> pd.DataFrame:
        """Transitions as a DataFrame: phase, message, at, duration_s, flag."""
        from .frames import transitions_frame

        return transitions_frame(self.transitions, until=self.ended_at)

    # -- the work, written once (each runs on the run's loop) --------------------------------------
    async def _wait(self, /, timeout: float | None = None, cancel_on_interrupt: bool = False) -> Resource:
        if not self.done and self._poller is None:
            raise EngineError(f"run {self.run_id} is in step mode (autopoll=False): call refresh() or resume()")
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"run {self.run_id} is still {self.phase} after {timeout} s") from None
        except asyncio.CancelledError:
            if cancel_on_interrupt:
                await asyncio.shield(self._cancel_quietly())
            raise
        if self.polling_error is not None:
            raise self.polling_error
        assert self.resource is not None or self.transitions
        return self.resource or Resource(phase=self.phase, message=self.message)

    async def _refresh(self, /) -> Resource:
        """Call ``get`` once now and record the result."""
        resource = await self._get(self.policy.call_timeout)
        self._apply(resource, step=not self.autopoll)
        return resource

    async def _cancel(self, /, timeout: float | None = None) -> None:
        if not self.live:
            return
        self._stop_poller()
        limit = self.policy.call_timeout if timeout is None else timeout
        try:
            await with_deadline(self.transport.delete(self.category, self.resource_meta), limit, "delete",
                                self.task_type)
        except Exception as e:
            self.error = mask_error(e, self.inputs)
            self._notify()
            if self.autopoll:
                self._start_poller()  # the job may still be running: keep watching it
            raise
        self._apply(Resource(phase="ABORTED", message="cancelled (delete called)"))

    async def _metrics(
        self, queries: Iterable[str] = (), start: datetime | None = None, end: datetime | None = None,
        step: Any = None,
    ) -> pd.DataFrame:
        from .frames import metrics_frame

        call = self.transport.get_metrics(self.category, self.resource_meta, tuple(queries), start, end, step)
        return metrics_frame(await with_deadline(call, self.policy.call_timeout, "get_metrics", self.task_type))

    async def _logs(self, /, lines: int = 0) -> Logs:
        from .logs import collect_logs

        call = collect_logs(self.transport, self.category, self.resource_meta, lines)
        return await with_deadline(call, self.policy.call_timeout, "get_logs", self.task_type)

    def _wait_interrupted(self, error: KeyboardInterrupt, timeout: float | None = None,
                          cancel_on_interrupt: bool = False) -> WaitInterrupted:
        if cancel_on_interrupt:  # the cancelled wait has already started the delete (see _wait)
            fate = "cancelling it (delete called)"
        else:
            fate = f"it is still {self.phase} and still polled; run.cancel() stops it"
        return WaitInterrupted(f"stopped waiting for run {self.run_id}: {fate}")

    async def _cancel_quietly(self) -> None:
        try:
            await self._cancel()
        except Exception as e:  # kept on the run (error, message); the interrupt is what the user sees
            log.warning("cancel of %s failed: %s", self.run_id, e)

    # -- public API: one set of methods for sync and async callers -----------------------------------
    #: Wait until polling ends; return the final Resource. ``cancel_on_interrupt`` calls ``delete`` on Ctrl-C.
    wait = dual(_wait, interrupted="_wait_interrupted")
    #: Call ``get`` once now and record the result.
    refresh = dual(_refresh)
    #: Call ``delete`` (within ``timeout`` s, default ``PollPolicy.call_timeout``); the run becomes ABORTED.
    cancel = dual(_cancel)
    #: Metrics as a tidy DataFrame: metric, timestamp, value, one column per label.
    metrics = dual(_metrics)
    #: All log lines, following continuation tokens.
    logs = dual(_logs)
    wait_async = bridged(_wait)
    refresh_async = bridged(_refresh)
    cancel_async = bridged(_cancel)
    metrics_async = bridged(_metrics)
    logs_async = bridged(_logs)

    def __await__(self) -> Generator[Any, None, Resource]:
        return self.wait_async().__await__()

    def submit(
        self, coro: Coroutine[Any, Any, Any], callback: Callable[[concurrent.futures.Future[Any]], None] | None = None
    ) -> concurrent.futures.Future[Any]:
        """Run ``coro`` on this run's loop from any thread; ``callback(future)`` is called when it ends."""
        return submit(coro, self._loop, callback)

    def resume(self) -> None:
        """Start (or restart) auto-polling, e.g. after step mode or after polling stopped on errors."""
        if self.live:
            self._loop.call_soon_threadsafe(self._resume)  # asyncio.Event is not thread-safe

    def debug(self) -> None:
        """Open the post-mortem debugger on the connector's last exception (what ``%debug`` would show)."""
        if self.error is None:
            raise ConnectorNbError(f"run {self.run_id} has no error to debug")
        cause = getattr(self.error, "original", None) or self.error.__cause__ or self.error
        import pdb

        pdb.post_mortem(cause.__traceback__)

    # -- what the Poller reports -----------------------------------------------------------------
    async def _get(self, timeout: float) -> Resource:
        call = self.transport.get(self.category, self.resource_meta, self.output_prefix)
        resource = await with_deadline(call, timeout, "get", self.task_type)
        self.get_calls += 1
        self.error = None
        self.unreachable_since = None
        return resource

    async def _poll_once(self, timeout: float) -> None:
        self._apply(await self._get(timeout))

    def _unreachable(self, error: Exception) -> None:
        if self.unreachable_since is None:
            self.unreachable_since = utcnow()
            log.info("run %s: service unreachable, retrying: %s", self.run_id, error)
        self.error = mask_error(error, self.inputs)
        self._notify()

    def _get_failed(self, error: Exception, count: int) -> None:
        self.error = mask_error(error, self.inputs)
        self.unreachable_since = None
        log.debug("get failed for %s (%d in a row): %s", self.run_id, count, self.error)
        if count < self.policy.max_get_errors:
            self._notify()
            return
        self.polling_error = PollingStoppedError(
            f"polling of run {self.run_id} stopped after {count} consecutive get errors; last: {self.error}. "
            "The job may still be running: call run.resume() to poll again, or run.cancel()"
        )
        self.polling_error.__cause__ = error
        self._poller = None
        self._finish()

    async def _time_out(self) -> None:
        self._poller = None
        try:
            call = self.transport.delete(self.category, self.resource_meta)
            await with_deadline(call, self.policy.call_timeout, "delete", self.task_type)
        except Exception as e:  # still mark it: the user asked for a bound on this run
            self.error = mask_error(e, self.inputs)
        timeout = self.policy.timeout or 0.0
        self._apply(Resource(phase="ABORTED", message=f"timed out after {timeout:g} s (PollPolicy.timeout)"))

    # -- polling ---------------------------------------------------------------------------------
    def _start_poller(self) -> None:
        if self._poller is None and not self.done:
            self._poller = Poller(self)

    def _stop_poller(self) -> None:
        if self._poller is not None:
            self._poller.stop()
        self._poller = None

    def _resume(self) -> None:
        self.autopoll = True
        self.polling_error = None
        self._done.clear()
        self._start_poller()

    # -- recording -------------------------------------------------------------------------------
    def _apply(self, resource: Resource, step: bool = False) -> None:
        resource = resource.masked()  # a connector echoing a secret in a message never shows it anywhere
        previous = self.phase
        if is_terminal(previous) and resource.phase != previous:
            # A terminal run is never reopened: keep what the connector said, flagged, and stay terminal.
            self._record(resource, step=True, flag="after terminal")
            self._notify()
            return
        flag = "backwards" if phase_rank(resource.phase) < phase_rank(previous) else ""
        self.resource = resource
        self._outputs = None
        self._record(resource, step=step, flag=flag)
        self.phase = resource.phase
        if is_terminal(resource.phase):
            self._stop_poller()
            self._finish()
        else:
            self._notify()

    def _record(self, resource: Resource, step: bool = False, flag: str = "") -> None:
        """A transition on each phase change; in step mode on every poll, with its raw Resource."""
        if step or flag or not self.transitions or self.transitions[-1].phase != resource.phase:
            self.transitions.append(Transition(
                resource.phase, resource.message, utcnow(), tuple(resource.log_links), resource.custom_info,
                resource if step else None, flag,
            ))
        if flag:
            previous = self.transitions[-2].phase if len(self.transitions) > 1 else "?"
            self.flags.append(f"{previous} -> {resource.phase} ({flag})")
            log.warning("run %s: odd phase sequence %s -> %s (%s)", self.run_id, previous, resource.phase, flag)

    def _finish(self) -> None:
        if self.ended_at is None:
            self.ended_at = utcnow()
        self._done.set()
        self._notify()

    def _notify(self) -> None:
        for callback in [*self._observers, *self._session._observers]:
            try:
                callback(self)
            except Exception:  # a broken observer must not stop polling
                log.exception("run observer %r failed", callback)

    # -- display ---------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"<Run {self.run_id} {self.task_type} {self.phase} {self.elapsed:.1f}s get_calls={self.get_calls}>"

    def _repr_html_(self) -> str:
        from ._display import repr_html

        return repr_html(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """A live RunView in a widget frontend, with text/html and text/plain fallbacks everywhere else."""
        from ._display import repr_mimebundle

        return repr_mimebundle(self, include, exclude)


def phase_counts(runs: Iterable[Run]) -> dict[str, int]:
    """Number of runs per phase."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.phase] = counts.get(run.phase, 0) + 1
    return counts


def counts_text(counts: Mapping[str, int]) -> str:
    """``"RUNNING=2 SUCCEEDED=5"``: phase counts as plain text."""
    return " ".join(f"{phase}={n}" for phase, n in sorted(counts.items()))


def _python_outputs(outputs: Any, template: tasks_pb2.TaskTemplate) -> dict[str, Any]:
    from .literals import StructuredDataset, load_dataframe, to_python_dict
    from .template import interface_types

    types = interface_types(template)[1]
    values = dict(outputs) if isinstance(outputs, Mapping) else to_python_dict(outputs, types, role="output")
    return {k: load_dataframe(v) if isinstance(v, StructuredDataset) else v for k, v in values.items()}


__all__ = ["Observable", "Observer", "Run", "Transition", "WaitInterrupted", "counts_text", "phase_counts", "utcnow"]
