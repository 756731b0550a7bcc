"""Sessions and runs: launch connector tasks, auto-poll ``get``, record every transition.

``AsyncSession`` is the async session object; ``Session`` is its blocking facade, living on the
process-wide engine loop (see ``_engine``) so it is safe inside a running Jupyter loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterable, Mapping

from ._engine import ENGINE, await_on, blocking, run_blocking
from .connector import FINAL_PHASES, TERMINAL_PHASES, Resource
from .errors import ConnectorNbError, EngineError, PollingStoppedError, SessionClosedError
from .polling import PollPolicy
from .secrets import mask_error
from .transports import ConnectorInfo, TaskCategory, Transport, make_transport

if TYPE_CHECKING:
    import pandas as pd
    from flyteidl.admin import agent_pb2
    from flyteidl.core import tasks_pb2

    from .journal import Journal
    from .logs import Logs
    from .registry import ConnectorRegistry

log = logging.getLogger(__name__)
Observer = Callable[["Run"], None]


def _now() -> datetime:
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


class _Observable:
    """Callbacks ``callback(run)`` called on the engine thread after every change of a run."""

    _observers: list[Observer]

    def on_change(self, callback: Observer) -> Callable[[], None]:
        """Subscribe ``callback(run)``; returns a function that unsubscribes it."""
        self._observers.append(callback)
        return lambda: self._observers.remove(callback) if callback in self._observers else None


class Run(_Observable):
    """One launched task: its phase, transitions, latest resource and outputs, kept live by polling."""

    def __init__(
        self,
        session: AsyncSession,
        category: TaskCategory,
        template: tasks_pb2.TaskTemplate,
        inputs: dict[str, Any],
        resource_meta: bytes,
        output_prefix: str,
        policy: PollPolicy,
        autopoll: bool = True,
        run_id: str | None = None,
    ) -> None:
        self.session = session
        self.category = category
        self.template = template
        self.inputs = inputs
        self.resource_meta = resource_meta
        self.output_prefix = output_prefix
        self.policy = policy
        self.autopoll = autopoll
        self.run_id = run_id or f"{category.name}-{uuid.uuid4().hex[:6]}"
        self.started_at = _now()
        self.ended_at: datetime | None = None
        self.resource: Resource | None = None
        self.transitions: list[Transition] = []
        self.get_calls = 0
        #: The last exception from the connector or transport (kept for ``%debug``); None when healthy.
        self.error: BaseException | None = None
        self.polling_error: PollingStoppedError | None = None
        self._loop = session._loop
        self._started = time.monotonic()
        self._done = asyncio.Event()
        self._observers: list[Observer] = []
        self._poller: asyncio.Task[None] | None = None
        self._outputs: dict[str, Any] | None = None
        self._record(Resource(phase="QUEUED", message="created"))

    # -- state -----------------------------------------------------------------------------------
    @property
    def task_type(self) -> str:
        return self.category.name

    @property
    def version(self) -> int:
        return self.category.version

    @property
    def phase(self) -> str:
        return self.transitions[-1].phase

    @property
    def message(self) -> str:
        return self.resource.message if self.resource is not None else self.transitions[-1].message

    @property
    def done(self) -> bool:
        """Whether polling has ended: a final phase, or too many consecutive ``get`` errors."""
        return self._done.is_set()

    @property
    def elapsed(self) -> float:
        end = self.ended_at or _now()
        return (end - self.started_at).total_seconds()

    @property
    def log_links(self) -> list[Any]:
        return list(self.resource.log_links) if self.resource is not None else []

    @property
    def outputs(self) -> dict[str, Any]:
        """Outputs as Python values; structured datasets become DataFrames. Empty until there are any."""
        if self._outputs is None and self.resource is not None and self.resource.outputs is not None:
            self._outputs = _python_outputs(self.resource.outputs, self.template)
        return dict(self._outputs or {})

    def summary(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "task_type": self.task_type, "phase": self.phase,
                "started": self.started_at, "duration_s": round(self.elapsed, 3),
                "get_calls": self.get_calls, "message": self.message}

    def timeline(self) -> pd.DataFrame:
        """Transitions as a DataFrame: phase, message, at, duration_s."""
        from .frames import transitions_frame

        return transitions_frame(self.transitions, until=self.ended_at)

    # -- async API -------------------------------------------------------------------------------
    async def wait_async(self, timeout: float | None = None) -> Resource:
        """Wait until polling ends; return the final Resource (raises if polling stopped on errors)."""
        if not self.done and self._poller is None:
            raise EngineError(f"run {self.run_id} is in step mode (autopoll=False): call refresh() or resume()")
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"run {self.run_id} is still {self.phase} after {timeout} s") from None
        if self.polling_error is not None:
            raise self.polling_error
        assert self.resource is not None
        return self.resource

    async def refresh_async(self) -> Resource:
        """Call ``get`` once now and record the result."""
        resource = await self.session.transport.get(self.category, self.resource_meta, self.output_prefix)
        self.get_calls += 1
        self.error = None
        self._apply(resource, step=not self.autopoll)
        return resource

    async def cancel_async(self) -> None:
        """Call ``delete`` and mark the run ABORTED. Idempotent: a finished run is left as it is."""
        if self.phase in TERMINAL_PHASES:
            return
        self._stop_poller()
        try:
            await self.session.transport.delete(self.category, self.resource_meta)
        except Exception as e:
            self.error = e
            self._notify()
            if self.autopoll:
                self._start_poller()  # the job may still be running: keep watching it
            raise
        self._apply(Resource(phase="ABORTED", message="cancelled (delete called)"))

    async def metrics_async(
        self, queries: Iterable[str] = (), start: datetime | None = None, end: datetime | None = None,
        step: Any = None,
    ) -> pd.DataFrame:
        """Metrics as a tidy DataFrame: metric, timestamp, value, one column per label."""
        from .frames import metrics_frame

        response = await self.session.transport.get_metrics(
            self.category, self.resource_meta, tuple(queries), start, end, step
        )
        return metrics_frame(response)

    async def logs_async(self, lines: int = 0) -> Logs:
        """All log lines, following continuation tokens."""
        from .logs import collect_logs

        return await collect_logs(self.session.transport, self.category, self.resource_meta, lines)

    def resume(self) -> None:
        """Start (or restart) auto-polling, e.g. after step mode or after polling stopped on errors."""
        if self.phase not in FINAL_PHASES:
            # asyncio.Event is not thread-safe: change the run's state on its loop.
            self._loop.call_soon_threadsafe(self._resume)

    def _resume(self) -> None:
        self.autopoll = True
        self.polling_error = None
        self._done.clear()
        self._start_poller()

    def debug(self) -> None:
        """Open the post-mortem debugger on the connector's last exception (what ``%debug`` would show)."""
        if self.error is None:
            raise ConnectorNbError(f"run {self.run_id} has no error to debug")
        cause = getattr(self.error, "original", None) or self.error.__cause__ or self.error
        import pdb

        pdb.post_mortem(cause.__traceback__)

    def __await__(self) -> Generator[Any, None, Resource]:
        return await_on(self.wait_async(), self._loop).__await__()

    wait = blocking(wait_async)
    refresh = blocking(refresh_async)
    cancel = blocking(cancel_async)
    metrics = blocking(metrics_async)
    logs = blocking(logs_async)

    # -- polling ---------------------------------------------------------------------------------
    def _start_poller(self) -> None:
        if self._poller is None and not self.done:
            self._poller = self._loop.create_task(self._poll(), name=f"poll {self.run_id}")

    def _stop_poller(self) -> None:
        if self._poller is not None and self._poller is not asyncio.current_task():
            self._poller.cancel()
        self._poller = None

    async def _poll(self) -> None:
        interval: float | None = None
        errors = 0
        while not self.done:
            if errors:
                delay = self.policy.backoff(errors)
            else:
                interval = self.policy.next_interval(interval)
                delay = self.policy.jittered(interval)
            if await self._timed_out(delay):
                return
            await asyncio.sleep(delay)
            try:
                await self.refresh_async()
                errors = 0
            except asyncio.CancelledError:
                raise
            except Exception as e:
                errors += 1
                self._get_failed(e, errors)

    async def _timed_out(self, delay: float) -> bool:
        timeout = self.policy.timeout
        if timeout is None or time.monotonic() - self._started + delay < timeout:
            return False
        await asyncio.sleep(max(0.0, timeout - (time.monotonic() - self._started)))
        self._poller = None
        try:
            await self.session.transport.delete(self.category, self.resource_meta)
        except Exception as e:  # still mark it: the user asked for a bound on this run
            self.error = e
        self._apply(Resource(phase="ABORTED", message=f"timed out after {timeout:g} s (PollPolicy.timeout)"))
        return True

    def _get_failed(self, error: Exception, count: int) -> None:
        self.error = mask_error(error, self.inputs)
        log.debug("get failed for %s (%d in a row): %s", self.run_id, count, error)
        if count >= self.policy.max_get_errors:
            self.polling_error = PollingStoppedError(
                f"polling of run {self.run_id} stopped after {count} consecutive get errors; last: {error}. "
                "The job may still be running: call run.resume() to poll again"
            )
            self.polling_error.__cause__ = error
            self._poller = None
            self._finish()
        else:
            self._notify()

    # -- recording -------------------------------------------------------------------------------
    def _apply(self, resource: Resource, step: bool = False) -> None:
        self.resource = resource
        self._outputs = None
        self._record(resource, step=step)
        if resource.phase in FINAL_PHASES:
            self._stop_poller()
            self._finish()
        else:
            self._notify()

    def _record(self, resource: Resource, step: bool = False) -> None:
        """A transition on each phase change; in step mode on every poll, with its raw Resource."""
        if step or not self.transitions or self.transitions[-1].phase != resource.phase:
            self.transitions.append(Transition(
                resource.phase, resource.message, _now(), tuple(resource.log_links), resource.custom_info,
                resource if step else None,
            ))

    def _finish(self) -> None:
        if self.ended_at is None:
            self.ended_at = _now()
        self._done.set()
        self._notify()

    def _notify(self) -> None:
        for callback in [*self._observers, *self.session._observers]:
            try:
                callback(self)
            except Exception:  # a broken observer must not stop polling
                log.exception("run observer %r failed", callback)

    # -- display ---------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"<Run {self.run_id} {self.task_type} {self.phase} {self.elapsed:.1f}s get_calls={self.get_calls}>"

    def _repr_html_(self) -> str:
        from .ui.reprs import run_html

        return run_html(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """A live RunView in a widget frontend, with text/html and text/plain fallbacks everywhere else."""
        from .ui.display import run_mimebundle

        return run_mimebundle(self, include, exclude)


class AsyncSession(_Observable):
    """Launches connector tasks and polls them. All methods are coroutines on one asyncio loop."""

    def __init__(
        self,
        target: str | Transport | None = None,
        *,
        registry: ConnectorRegistry | None = None,
        poll: PollPolicy | None = None,
        journal: Journal | str | bool | None = None,
        output_dir: str | None = None,
        **transport_options: Any,
    ) -> None:
        self.transport = make_transport(target, registry, **transport_options)
        self.registry = getattr(self.transport, "registry", registry)
        self.target = self.transport.target
        self.poll = poll or PollPolicy()
        self.output_dir = output_dir or tempfile.mkdtemp(prefix="connector-nb-")
        self.runs: list[Run] = []
        self._by_id: dict[str, Run] = {}
        self._observers: list[Observer] = []
        self._closed = False
        self._loop: asyncio.AbstractEventLoop = _running_loop_or_new()
        self.journal = _open_journal(journal)

    async def launch(
        self,
        task: str | tasks_pb2.TaskTemplate,
        inputs: Mapping[str, Any] | None = None,
        *,
        version: int = 0,
        custom: Mapping[str, Any] | None = None,
        output_prefix: str | None = None,
        poll: PollPolicy | None = None,
        autopoll: bool = True,
        task_execution_metadata: agent_pb2.TaskExecutionMetadata | None = None,
        **kwargs: Any,
    ) -> Run:
        """Create the task, return its Run once ``create`` has returned, then keep polling ``get``.

        ``task`` is a task type name or a TaskTemplate. Extra keyword arguments are inputs, so
        ``launch("sleep", seconds=2)`` works. Raises if the inputs do not match or ``create`` fails.
        """
        self._check_open()
        values = {**(inputs or {}), **kwargs}
        category, template, defaults = await self._resolve(task, version, custom, values)
        from .template import bind_inputs

        literals = bind_inputs(template, values, defaults)
        run_id = f"{category.name}-{uuid.uuid4().hex[:6]}"
        prefix = output_prefix or os.path.join(self.output_dir, run_id)
        try:
            meta = await self.transport.create(
                template, literals, prefix, task_execution_metadata or _execution_metadata(template, run_id)
            )
        except Exception as e:
            raise mask_error(e, values)  # noqa: B904 (the chain is kept, masked)
        run = Run(self, category, template, {**defaults, **values}, meta, prefix, poll or self.poll,
                  autopoll, run_id)
        self._add(run)
        if autopoll:
            run._start_poller()
        return run

    async def launch_many(
        self, task: str | tasks_pb2.TaskTemplate, inputs: Iterable[Mapping[str, Any]], **options: Any
    ) -> list[Run]:
        """Launch one run per inputs mapping, concurrently. Raises the first error after all were tried."""
        results = await asyncio.gather(*(self.launch(task, i, **options) for i in inputs), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return list(results)  # type: ignore[arg-type]

    async def reattach(self, run_id: str, *, poll: PollPolicy | None = None) -> Run:
        """Track again a run recorded in this session's journal (e.g. after a kernel restart)."""
        from flyteidl.core import tasks_pb2

        if self.journal is None:
            raise ConnectorNbError("reattach needs a journal: Session(journal=True) or journal='path.sqlite3'")
        row = self.journal.get(run_id)
        if row["resource_meta"] is None:
            raise ConnectorNbError(f"run {run_id!r} has no stored resource metadata (it carried a secret)")
        template = tasks_pb2.TaskTemplate.FromString(row["template"])
        run = Run(self, TaskCategory(row["task_type"], row["version"]), template, {}, row["resource_meta"],
                  row["output_prefix"], poll or self.poll, True, run_id)
        self._add(run)
        run._start_poller()
        return run

    async def connectors(self) -> list[ConnectorInfo]:
        """What the target offers: name, task type, version."""
        return await self.transport.connectors()

    def get_run(self, run_id: str | Run) -> Run:
        if isinstance(run_id, Run):
            return run_id
        try:
            return self._by_id[run_id]
        except KeyError:
            known = ", ".join(list(self._by_id)[-5:]) or "none yet"
            raise KeyError(f"no run {run_id!r} in this session; recent runs: {known}") from None

    def runs_frame(self) -> pd.DataFrame:
        from .frames import runs_frame

        return runs_frame(self.runs)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for run in self.runs:
            counts[run.phase] = counts.get(run.phase, 0) + 1
        return counts


    async def cancel_all(self) -> list[Run]:
        """Cancel every run that is not finished; returns them. Errors are kept on each run."""
        live = [r for r in self.runs if r.phase not in TERMINAL_PHASES]
        await asyncio.gather(*(r.cancel_async() for r in live), return_exceptions=True)
        return live

    async def close(self, cancel_running: bool = False) -> None:
        """Stop polling (and cancel unfinished runs if asked), then release the transport."""
        if self._closed:
            return
        if cancel_running:
            await self.cancel_all()
        self._closed = True
        for run in self.runs:
            run._stop_poller()
        await asyncio.sleep(0)  # let cancelled pollers unwind
        await self.transport.aclose()
        if self.journal is not None:
            self.journal.close()

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosedError("this session is closed; create a new one")

    def _add(self, run: Run) -> None:
        self.runs.append(run)
        self._by_id[run.run_id] = run
        if self.journal is not None:
            run.on_change(self.journal.record)
            self.journal.record(run)
        run._notify()

    async def _resolve(
        self, task: str | tasks_pb2.TaskTemplate, version: int, custom: Mapping[str, Any] | None,
        values: Mapping[str, Any],
    ) -> tuple[TaskCategory, tasks_pb2.TaskTemplate, dict[str, Any]]:
        from .template import with_inferred_interface

        if not isinstance(task, str):
            template = _with_custom(task, custom)
            return TaskCategory(template.type, template.task_type_version), template, {}
        category = TaskCategory(task, version)
        template = await self.transport.task_template(category, dict(custom) if custom else None)
        if template is None:  # remote targets publish no interface: infer it from the values
            template = with_inferred_interface(task, dict(values), custom=custom, version=version)
        defaults = getattr(self.transport, "input_defaults", lambda _c: {})(category)
        return category, template, defaults

    def __repr__(self) -> str:
        return f"<AsyncSession {self.target} runs={len(self.runs)} {_counts_text(self.counts())}>"


class Session:
    """Blocking facade of an :class:`AsyncSession` running on the engine loop thread.

    Safe to use inside a running Jupyter loop: work happens on the engine thread, so polling goes on
    while cells run or block.
    """

    def __init__(
        self,
        target: str | Transport | None = None,
        *,
        registry: ConnectorRegistry | None = None,
        poll: PollPolicy | None = None,
        journal: Journal | str | bool | None = None,
        output_dir: str | None = None,
        **transport_options: Any,
    ) -> None:
        """``target``: None for in-process, or ``grpc[s]://host:port``; ``transport_options`` go to the transport
        (for gRPC: ``metadata``, ``root_certificates``, ``timeout``, ...)."""
        options = dict(registry=registry, poll=poll, journal=journal, output_dir=output_dir, **transport_options)
        self._loop = ENGINE.acquire()
        try:
            self._async: AsyncSession = run_blocking(_make_async(target, options), self._loop)
        except BaseException:
            ENGINE.release()
            raise
        self._released = False

    launch = blocking(AsyncSession.launch, via="_async")
    launch_many = blocking(AsyncSession.launch_many, via="_async")
    connectors = blocking(AsyncSession.connectors, via="_async")
    reattach = blocking(AsyncSession.reattach, via="_async")
    cancel_all = blocking(AsyncSession.cancel_all, via="_async")

    @property
    def async_session(self) -> AsyncSession:
        return self._async

    @property
    def runs(self) -> list[Run]:
        return list(self._async.runs)

    @property
    def target(self) -> str:
        return self._async.target

    @property
    def registry(self) -> ConnectorRegistry | None:
        return self._async.registry

    @property
    def transport(self) -> Transport:
        return self._async.transport

    @property
    def journal(self) -> Journal | None:
        return self._async.journal

    @property
    def closed(self) -> bool:
        return self._released

    def get_run(self, run_id: str | Run) -> Run:
        return self._async.get_run(run_id)

    def runs_frame(self) -> pd.DataFrame:
        return self._async.runs_frame()

    def counts(self) -> dict[str, int]:
        return self._async.counts()

    def on_change(self, callback: Observer) -> Callable[[], None]:
        return self._async.on_change(callback)

    def serve(self, port: int = 0, host: str = "127.0.0.1", **options: Any) -> Any:
        """Serve this session's registry over gRPC in the background; returns a handle with ``.stop()``."""
        from .server import serve

        if self.registry is None:
            raise ConnectorNbError("only an in-process session has a registry to serve")
        return serve(self.registry, port=port, host=host, block=False, **options)

    def close(self, cancel_running: bool = False) -> None:
        """Stop polling, release the transport and, with the last session, stop the engine thread."""
        if self._released:
            return
        try:
            run_blocking(self._async.close(cancel_running), self._loop)
        finally:
            self._released = True
            ENGINE.release()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close without blocking the caller's loop (e.g. ``async with Session() as s:`` in a cell)."""
        if not self._released:
            try:
                await await_on(self._async.close(), self._loop)
            finally:
                self._released = True
                ENGINE.release()

    def __repr__(self) -> str:
        return f"<Session {self.target} runs={len(self._async.runs)} {_counts_text(self.counts())}>"

    def _repr_html_(self) -> str:
        from .ui.reprs import session_html

        return session_html(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """A live Dashboard in a widget frontend, with text/html and text/plain fallbacks everywhere else."""
        from .ui.display import session_mimebundle

        return session_mimebundle(self, include, exclude)


async def _make_async(target: str | Transport | None, options: dict[str, Any]) -> AsyncSession:
    return AsyncSession(target, **options)


def _running_loop_or_new() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise EngineError("AsyncSession must be created inside a running event loop; use Session otherwise") from None


def _open_journal(journal: Journal | str | bool | None) -> Journal | None:
    if journal is None or journal is False:
        return None
    from .journal import Journal

    if isinstance(journal, Journal):
        return journal
    return Journal(None if journal is True else journal)


def _counts_text(counts: Mapping[str, int]) -> str:
    return " ".join(f"{phase}={n}" for phase, n in sorted(counts.items()))


def _with_custom(template: tasks_pb2.TaskTemplate, custom: Mapping[str, Any] | None) -> tasks_pb2.TaskTemplate:
    if not custom:
        return template
    from google.protobuf import json_format

    copy = type(template)()
    copy.CopyFrom(template)
    copy.custom.Clear()
    json_format.ParseDict(dict(custom), copy.custom)
    return copy


def _execution_metadata(template: tasks_pb2.TaskTemplate, run_id: str) -> agent_pb2.TaskExecutionMetadata:
    """Metadata shaped like propeller's, so connectors that read execution ids work unchanged."""
    from flyteidl.admin import agent_pb2
    from flyteidl.core import identifier_pb2 as ids

    execution = ids.WorkflowExecutionIdentifier(project=template.id.project, domain=template.id.domain, name=run_id)
    task_execution = ids.TaskExecutionIdentifier(
        task_id=template.id, node_execution_id=ids.NodeExecutionIdentifier(node_id="n0", execution_id=execution),
    )
    return agent_pb2.TaskExecutionMetadata(task_execution_id=task_execution, namespace="connector-nb")


def _python_outputs(outputs: Any, template: tasks_pb2.TaskTemplate) -> dict[str, Any]:
    from .literals import StructuredDataset, load_dataframe, to_python_dict
    from .template import interface_types

    values = dict(outputs) if isinstance(outputs, Mapping) else to_python_dict(outputs, interface_types(template)[1])
    return {k: load_dataframe(v) if isinstance(v, StructuredDataset) else v for k, v in values.items()}


__all__ = ["AsyncSession", "Run", "Session", "Transition"]
