"""Sessions: ``AsyncSession`` launches connector tasks and tracks their runs; ``Session`` is its blocking facade.

``AsyncSession`` lives on the loop that made it. ``Session`` makes one on the process-wide engine loop
(see ``_engine``), so it is safe inside a running Jupyter loop and polling goes on while cells block.
Launches are journaled before ``create`` (see ``journal``), so no job is lost when a kernel dies.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Iterable, Mapping, Protocol, TypeVar, cast

from ._engine import ENGINE, Same, await_on, blocking, construct, run_blocking, running_loop, same, submit
from ._scratch import Scratch
from .errors import ConnectorNbError, SessionClosedError
from .polling import PollPolicy
from .recovery import Ledger, history, open_journal
from .run import Observable, Observer, Run, Transition, counts_text, phase_counts, utcnow
from .transports import ConnectorInfo, TaskCategory, Transport, make_transport

if TYPE_CHECKING:
    import pandas as pd
    from flyteidl.admin import agent_pb2
    from flyteidl.core import tasks_pb2

    from .journal import Journal
    from .registry import ConnectorRegistry

T = TypeVar("T")
_ids = random.Random(os.urandom(16))  # seeded once: os.urandom per id (uuid4) costs ~100 us on some VMs
#: Finished runs kept in memory per session by default; older ones stay in the journal only.
RETAIN = 1000


class AsyncSession(Observable):
    """Launches connector tasks and polls them. All methods are coroutines on the loop that made it."""

    def __init__(
        self,
        target: str | Transport | None = None,
        *,
        registry: ConnectorRegistry | None = None,
        poll: PollPolicy | None = None,
        journal: Journal | str | bool | None = None,
        output_dir: str | None = None,
        retain: int = RETAIN,
        **transport_options: Any,
    ) -> None:
        """``target``: None for in-process, or ``grpc[s]://host:port``; ``journal=False`` turns the journal off;
        ``record="file.cnbrec"`` records every connector call (see ``connector_nb.recording``)."""
        self._loop: asyncio.AbstractEventLoop = running_loop("AsyncSession")
        self.transport = make_transport(target, registry, **transport_options)
        self.registry = self.transport.registry
        self.target = self.transport.target
        self.poll = poll or PollPolicy()
        self.retain = retain
        #: The session the user holds (the ``Session`` facade when there is one); runs report it.
        self.public: Session | AsyncSession = self
        self.journal = open_journal(journal)
        self._ledger = Ledger(self.journal, self.target)
        self._scratch = Scratch(output_dir)
        self._by_id: dict[str, Run] = {}
        self._finished: deque[str] = deque()
        self._observers: list[Observer] = []
        self._closed = False

    # -- launching -------------------------------------------------------------------------------
    async def launch(
        self,
        /,
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
        ``launch("sleep", seconds=2)`` works. Raises if the inputs do not match or ``create`` fails;
        :class:`CreateOutcomeUnknownError` if the job may exist but no answer came (it is never re-sent).
        """
        self._check_open()
        values = {**(inputs or {}), **kwargs}
        from .sync import launch_call
        from .template import bind_inputs, execution_metadata, remember_secrets

        category, template, defaults = await self.transport.resolve(task, version, custom, values)

        literals = bind_inputs(template, values, defaults)
        remember_secrets(template, {**defaults, **values})  # masked wherever they surface, remote runs too
        policy = poll or self.poll
        run_id = self.new_run_id(category.name)
        prefix = output_prefix or os.path.join(self.output_dir, run_id)
        all_inputs = {**defaults, **values}
        metadata = execution_metadata(template, run_id, task_execution_metadata)
        started = utcnow()
        first = await launch_call(self.transport, category, template, literals, prefix, metadata)
        meta = await self._ledger.create(
            first.call, run_id=run_id, category=category, template=template.SerializeToString(), prefix=prefix,
            inputs=all_inputs, timeout=policy.create_timeout, started_at=started,
        )
        run = Run(self, category, template, all_inputs, meta, prefix, policy, autopoll, run_id, started_at=started)
        self._add(run)
        if not first.finish(run) and autopoll:  # a sync connector's run is final already: nothing to poll
            run._start_poller()
        return run

    async def launch_many(
        self, /, task: str | tasks_pb2.TaskTemplate, inputs: Iterable[Mapping[str, Any]], **options: Any
    ) -> list[Run]:
        """Launch one run per inputs mapping, concurrently. Raises the first error after all were tried."""
        results = await asyncio.gather(*(self.launch(task, i, **options) for i in inputs), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return [r for r in results if isinstance(r, Run)]

    async def connectors(self, /) -> list[ConnectorInfo]:
        """What the target offers: name, task type, version."""
        return await self.transport.connectors()

    # -- recovery ------------------------------------------------------------------------------
    def recover(self, /) -> pd.DataFrame:
        """Runs that earlier processes left unfinished (from the journal): id, task type, target, age, phase."""
        from .frames import recovery_frame

        return recovery_frame([r for r in self._ledger.unfinished("recover") if r["run_id"] not in self._by_id])

    async def reattach(self, /, run_id: str, *, poll: PollPolicy | None = None) -> Run:
        """Track again a run from the journal (e.g. after a kernel died); the same Run if already tracked."""
        if run_id in self._by_id:
            return self._by_id[run_id]
        row = self._ledger.reattachable(run_id)
        from flyteidl.core import tasks_pb2

        past = history(row)
        run = Run(self, TaskCategory(row["task_type"], row["version"]),
                  tasks_pb2.TaskTemplate.FromString(row["template"]), dict(row["inputs"]), row["resource_meta"],
                  row["output_prefix"] or "", poll or self.poll, True, run_id, started_at=row["started_at"],
                  history=past)
        self._add(run, journaled=len(past), reattached=True)
        if run.live:
            run._start_poller()
        return run

    async def reattach_all(self, /, *, poll: PollPolicy | None = None) -> list[Run]:
        """Reattach every run ``recover()`` lists that has a handle to poll; returns them."""
        rows = self._ledger.unfinished("reattach")
        return [await self.reattach(r["run_id"], poll=poll) for r in rows if r["resource_meta"] is not None]

    # -- runs ------------------------------------------------------------------------------------
    @property
    def runs(self) -> list[Run]:
        """The runs this session tracks: every live one, and the last ``retain`` finished ones."""
        return list(self._by_id.values())

    def get_run(self, /, run_id: str | Run) -> Run:
        """The run with this id (or the run itself); an unknown id lists the recent ones."""
        if isinstance(run_id, Run):
            return run_id
        try:
            return self._by_id[run_id]
        except KeyError:
            from .errors import UnknownRunError

            known = ", ".join(list(self._by_id)[-5:]) or "none yet"
            raise UnknownRunError(f"no run {run_id!r} in this session; recent runs: {known}") from None

    def runs_frame(self, /, history: bool = False) -> pd.DataFrame:
        """One row per run; ``history=True`` adds finished runs that only the journal still holds."""
        from .frames import runs_frame

        frame = runs_frame(self.runs)
        if history and self.journal is not None:
            from .frames import with_history

            frame = with_history(frame, self.journal)
        return frame

    def counts(self, /) -> dict[str, int]:
        """Number of tracked runs per phase."""
        return phase_counts(self._by_id.values())

    def new_run_id(self, /, task_type: str) -> str:
        """A fresh run id; it travels as the execution name so idempotent connectors can deduplicate."""
        # ms first: ids sort by launch time, so journal keys grow at one end (random ones cost ~6x at 100k runs)
        return f"{task_type}-{time.time_ns() // 1_000_000:011x}{_ids.getrandbits(52):013x}"

    def submit(
        self, coro: Coroutine[Any, Any, T], callback: Callable[[concurrent.futures.Future[T]], None] | None = None
    ) -> concurrent.futures.Future[T]:
        """Run ``coro`` on this session's loop from any thread; ``callback(future)`` is called when it ends."""
        return submit(coro, self._loop, callback)

    @property
    def output_dir(self) -> str:
        """Where runs write outputs by default: a scratch folder made on first use, removed on close."""
        return self._scratch.path

    # -- ending ----------------------------------------------------------------------------------
    async def cancel_all(self, /, timeout: float | None = None) -> list[Run]:
        """Cancel every live run (``delete`` within ``timeout`` s each); errors are kept on each run."""
        live = [r for r in self._by_id.values() if r.live]
        await asyncio.gather(*(r.cancel_async(timeout) for r in live), return_exceptions=True)
        return live

    async def close(self, /, cancel_running: bool = False, timeout: float | None = None) -> None:
        """Stop polling (cancelling live runs first if asked, within ``timeout``), release the transport."""
        if self._closed:
            return
        if cancel_running:
            await self.cancel_all(timeout)
        self._closed = True
        for run in self._by_id.values():
            run._stop_poller()
        await asyncio.sleep(0)  # let cancelled pollers unwind
        await self.transport.aclose()
        self._ledger.close()
        self._scratch.remove(r.resource.outputs for r in self._by_id.values() if r.resource is not None)

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosedError("this session is closed; create a new one")

    def _add(self, run: Run, journaled: int = 1, reattached: bool = False) -> None:
        """Track ``run``; its first ``journaled`` transitions are in the journal already (the intent: QUEUED)."""
        self._by_id[run.run_id] = run
        self._ledger.watch(run, journaled, claim=reattached)
        run.on_change(self._retire)
        run._notify()

    def _retire(self, run: Run) -> None:
        """Keep at most ``retain`` finished runs in memory (the journal keeps them all)."""
        if not run.done or run.run_id in self._finished:
            return
        self._finished.append(run.run_id)
        while len(self._finished) > self.retain:
            old = self._by_id.pop(self._finished.popleft(), None)
            if old is not None:
                old._observers.clear()

    def __repr__(self, /) -> str:
        return f"<{type(self.public).__name__} {self.target} runs={len(self._by_id)} {counts_text(self.counts())}>"

    def _repr_html_(self, /) -> str:
        from ._display import repr_html

        return repr_html(self.public)

    def _repr_mimebundle_(self, /, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """A live Dashboard in a widget frontend, with text/html and text/plain fallbacks everywhere else."""
        from ._display import repr_mimebundle

        return repr_mimebundle(self.public, include, exclude)


class Served(Protocol):
    """What ``Session.serve`` returns (``server.ServerHandle``): where it serves, and how to stop it."""

    port: int

    @property
    def target(self) -> str:
        """``grpc[s]://host:port``."""

    @property
    def running(self) -> bool:
        """Whether it still serves."""

    def stop(self, grace: float | None = None) -> None:
        """Stop serving."""


class Session:
    """Blocking facade of an :class:`AsyncSession` running on the engine loop thread.

    Safe to use inside a running Jupyter loop: work happens on the engine thread, so polling goes on
    while cells run or block. Every method below is its AsyncSession's, made blocking or passed through.
    """

    def __init__(
        self,
        target: str | Transport | None = None,
        *,
        registry: ConnectorRegistry | None = None,
        poll: PollPolicy | None = None,
        journal: Journal | str | bool | None = None,
        output_dir: str | None = None,
        retain: int = RETAIN,
        **transport_options: Any,
    ) -> None:
        """``target``: None for in-process, or ``grpc[s]://host:port``; ``transport_options`` go to the transport
        (``record="file.cnbrec"``; for gRPC: ``token``, ``protocol``, ``root_certificates``, ``timeout``, ...)."""
        options = dict(registry=registry, poll=poll, journal=journal, output_dir=output_dir, retain=retain,
                       **transport_options)
        self._loop = ENGINE.acquire()
        try:
            self._async: AsyncSession = run_blocking(construct(AsyncSession, target, **options), self._loop)
        except BaseException:
            ENGINE.release()
            raise
        self._async.public = self
        self._released = False

    launch = blocking(AsyncSession.launch, via="_async")
    launch_many = blocking(AsyncSession.launch_many, via="_async")
    connectors = blocking(AsyncSession.connectors, via="_async")
    reattach = blocking(AsyncSession.reattach, via="_async")
    reattach_all = blocking(AsyncSession.reattach_all, via="_async")
    cancel_all = blocking(AsyncSession.cancel_all, via="_async")
    recover = same(AsyncSession.recover, via="_async")
    get_run = same(AsyncSession.get_run, via="_async")
    runs_frame = same(AsyncSession.runs_frame, via="_async")
    counts = same(AsyncSession.counts, via="_async")
    on_change = same(AsyncSession.on_change, via="_async")
    submit = same(AsyncSession.submit, via="_async")
    new_run_id = same(AsyncSession.new_run_id, via="_async")
    runs: Same[list[Run]] = Same("_async")
    target: Same[str] = Same("_async")
    registry: Same[ConnectorRegistry | None] = Same("_async")
    transport: Same[Transport] = Same("_async")
    journal: Same[Journal | None] = Same("_async")
    poll: Same[PollPolicy] = Same("_async")
    output_dir: Same[str] = Same("_async")
    __repr__ = same(AsyncSession.__repr__, via="_async")
    _repr_html_ = same(AsyncSession._repr_html_, via="_async")
    _repr_mimebundle_ = same(AsyncSession._repr_mimebundle_, via="_async")

    @property
    def async_session(self) -> AsyncSession:
        """The AsyncSession behind this facade (its methods are coroutines on the engine loop)."""
        return self._async

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._released

    def serve(self, port: int = 0, host: str = "127.0.0.1", **options: Any) -> Served:
        """Serve this session's registry over gRPC in the background; returns a handle with ``.stop()``."""
        import importlib

        if self.registry is None:
            raise ConnectorNbError("only an in-process session has a registry to serve")
        # Looked up by name: the core does not import the server.
        serve = importlib.import_module("connector_nb.server").serve
        return cast(Served, serve(self.registry, port=port, host=host, block=False, **options))

    def close(self, /, cancel_running: bool = False, timeout: float | None = None) -> None:
        """Stop polling, release the transport and, with the last session, stop the engine thread."""
        if self._released:
            return
        try:
            run_blocking(self._async.close(cancel_running, timeout), self._loop)
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


__all__ = ["RETAIN", "AsyncSession", "Run", "Session", "Transition"]
