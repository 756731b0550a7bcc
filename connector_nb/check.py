"""The conformance check: launch real runs of a connector and judge it, one row per check (pass, fail, warn).

Every check goes through a :class:`~connector_nb.transports.Transport`, so the same code judges a connector
in-process (``LocalTransport``) and served over gRPC (``GrpcTransport`` against ``serve()``), and any
connector a registry accepts, native or wrapped by an adapter, is checked the same way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import re
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Mapping
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, quoteattr

from .connector import AsyncConnector, Resource, is_terminal, phase_rank
from .errors import ConnectorNbError, NotSupportedError
from .secrets import mask

if TYPE_CHECKING:
    import pandas as pd
    from flyteidl.core import literals_pb2, tasks_pb2

    from .registry import ConnectorRegistry
    from .transports.base import TaskCategory, Transport

PASS, FAIL, WARN = "pass", "fail", "warn"
#: The checks, in the order they are reported.
CHECKS = (
    "create_returns_metadata", "get_valid_phase", "reaches_terminal", "get_after_completion",
    "delete_after_completion", "delete_idempotent", "get_after_delete", "logs", "metrics", "log_links",
    "event_loop", "create_retry_safe",
)
#: Longest a connector method may hold the event loop before ``event_loop`` fails (seconds).
LAG_THRESHOLD = 0.25
#: Bound on log pages followed; a connector whose tokens never end fails ``logs``.
MAX_LOG_PAGES = 200
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")


@dataclass(frozen=True)
class CheckResult:
    """One row: the check, its status (pass/fail/warn), why, how long it took and how it was reached."""

    check: str
    status: str
    reason: str
    duration: float
    via: str = "in-process"


@dataclass
class CheckReport:
    """The rows of one ``check_connector`` call: a table (``frame()``, ``text()``) and JUnit XML."""

    task_type: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return not self.failed

    @property
    def failed(self) -> list[CheckResult]:
        """The rows that failed."""
        return [r for r in self.results if r.status == FAIL]

    def status(self, check: str, via: str | None = None) -> str:
        """The status of ``check`` (the worst over transports unless ``via`` is given)."""
        found = [r.status for r in self.results if r.check == check and (via is None or r.via == via)]
        if not found:
            raise KeyError(f"no check {check!r}; expected one of {', '.join(CHECKS)}")
        return FAIL if FAIL in found else WARN if WARN in found else PASS

    def rows(self) -> list[dict[str, Any]]:
        """The rows as dicts (check, status, reason, duration, via)."""
        return [{"check": r.check, "status": r.status, "reason": r.reason, "duration": round(r.duration, 3),
                 "via": r.via} for r in self.results]

    def frame(self) -> pd.DataFrame:
        """The table as a pandas DataFrame."""
        import pandas as pd

        frame: pd.DataFrame = pd.DataFrame(self.rows(), columns=["check", "status", "reason", "duration", "via"])
        return frame

    def text(self, durations: bool = True) -> str:
        """The table as aligned text, for a shell (``durations=False`` for output that never varies)."""
        header = ("CHECK", "STATUS", "VIA", "DURATION", "REASON") if durations else ("CHECK", "STATUS", "VIA",
                                                                                      "REASON")
        rows = [(r.check, r.status.upper(), r.via, f"{r.duration:.3f}s", r.reason) if durations else
                (r.check, r.status.upper(), r.via, r.reason) for r in self.results]
        widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in (header, *rows)]
        counts = {s: sum(r.status == s for r in self.results) for s in (PASS, WARN, FAIL)}
        lines.append(f"{self.task_type}: {counts[PASS]} passed, {counts[WARN]} warnings, {counts[FAIL]} failed")
        return "\n".join(lines)

    def junit_xml(self) -> str:
        """JUnit XML for CI: one testcase per row; a failure per failed row; warnings go to system-out."""
        cases = []
        for r in self.results:
            name = quoteattr(f"{r.check}[{r.via}]")
            body = (f"<failure message={quoteattr(r.reason)}>{escape(r.reason)}</failure>" if r.status == FAIL
                    else f"<system-out>{escape(r.status + ': ' + r.reason)}</system-out>")
            cases.append(f'  <testcase classname={quoteattr("connector_nb.check." + self.task_type)} name={name} '
                         f'time="{r.duration:.3f}">{body}</testcase>')
        total = sum(r.duration for r in self.results)
        return ('<?xml version="1.0" encoding="utf-8"?>\n'
                f'<testsuite name={quoteattr("check " + self.task_type)} tests="{len(self.results)}" '
                f'failures="{len(self.failed)}" errors="0" skipped="0" time="{total:.3f}">\n'
                + "\n".join(cases) + "\n</testsuite>\n")

    def write_junit(self, path: str) -> None:
        """Write :meth:`junit_xml` to ``path``."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.junit_xml())

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"<CheckReport {self.task_type}: {len(self.results)} checks, {len(self.failed)} failed>"

    def _repr_html_(self) -> str:
        html: str = self.frame().to_html(index=False)
        return html


# ------------------------------------------------------------------------------------------ lag probes


class _LoopLag:
    """Measures how late a ticking task wakes on a loop, and charges the lateness to the methods running.

    The loop is the caller's (in-process), or the one a server of ours runs connector calls on (``--wire``).
    """

    def __init__(self, tick: float = 0.005, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.tick, self.loop = tick, loop
        self.worst: dict[str, float] = {}
        self._active: set[str] = set()
        self._touched: set[str] = set()
        self._waiters: list[concurrent.futures.Future[None]] = []
        self._task: concurrent.futures.Future[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.run_coroutine_threadsafe(self._run(), self.loop or asyncio.get_running_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(asyncio.wrap_future(self._task), return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.tick)
            lag = max(0.0, loop.time() - start - self.tick)
            for name in self._active | self._touched:
                self.worst[name] = max(self.worst.get(name, 0.0), lag)
            self._touched = set(self._active)
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    @asynccontextmanager
    async def watch(self, method: str) -> AsyncIterator[None]:
        self._active.add(method)
        self._touched.add(method)
        try:
            yield
        finally:
            self._active.discard(method)
            # Wait for the next tick, so a block inside this call is charged to it and not to the next one.
            waiter: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._waiters.append(waiter)
            await asyncio.wrap_future(waiter)


class _RpcLag:
    """Over the wire: while a method runs, cheap ListAgents calls measure how late the service's loop answers."""

    def __init__(self, transport: Transport, tick: float = 0.01) -> None:
        self.transport, self.tick = transport, tick
        self.worst: dict[str, float] = {}
        self.baseline = 0.0

    async def _probe_once(self) -> float:
        start = time.monotonic()
        await self.transport.connectors()
        return time.monotonic() - start

    async def start(self) -> None:
        self.baseline = min([await self._probe_once() for _ in range(3)])

    async def stop(self) -> None:
        return None

    async def _probe(self, method: str, done: asyncio.Event) -> None:
        while True:
            lag = max(0.0, await self._probe_once() - self.baseline)
            self.worst[method] = max(self.worst.get(method, 0.0), lag)
            if done.is_set():
                return
            try:
                await asyncio.wait_for(done.wait(), self.tick)
            except asyncio.TimeoutError:
                pass

    @asynccontextmanager
    async def watch(self, method: str) -> AsyncIterator[None]:
        done = asyncio.Event()
        task = asyncio.create_task(self._probe(method, done))
        try:
            yield
        finally:
            done.set()
            await asyncio.gather(task, return_exceptions=True)


# ------------------------------------------------------------------------------------------ the checker


def _reason(error: BaseException) -> str:
    return mask(f"{type(error).__name__}: {error}".splitlines()[0])[:300]


def uri_problem(uri: str) -> str:
    """Why ``uri`` is not a well-formed absolute URI ("" when it is)."""
    if not uri:
        return "empty"
    if any(c.isspace() for c in uri):
        return "contains whitespace"
    try:
        parts = urlsplit(uri)
    except ValueError as e:
        return str(e)
    if not parts.scheme or not _SCHEME.match(parts.scheme):
        return "no scheme"
    if parts.scheme in ("http", "https") and not parts.netloc:
        return "no host"
    if not (parts.netloc or parts.path):
        return "nothing after the scheme"
    return ""


def metrics_problem(response: Any) -> str:
    """Why a GetTaskMetricsResponse is not a Prometheus-style result ("" when it is)."""
    from google.protobuf import json_format

    for result in response.results:
        if not result.metric:
            return "a result has no metric name"
        data = json_format.MessageToDict(result.data)
        series = data.get("result")
        if not isinstance(series, list):
            return f"{result.metric}: data has no 'result' list"
        for item in series:
            if not isinstance(item, dict) or not isinstance(item.get("metric", {}), dict):
                return f"{result.metric}: a series is not an object with a 'metric' map"
            samples = item.get("values", [item["value"]] if "value" in item else None)
            if not isinstance(samples, list):
                return f"{result.metric}: a series has neither 'values' nor 'value'"
            for sample in samples:
                if not (isinstance(sample, list) and len(sample) == 2 and _number(sample[0])
                        and _number(sample[1])):
                    return f"{result.metric}: sample {sample!r} is not [timestamp, value]"
    return ""


def _number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        float(value)  # Prometheus sends values as strings, "NaN" and "+Inf" included
    except (TypeError, ValueError):
        return False
    return True


@dataclass
class _Target:
    """What the checker drives: a transport, the task's category and template, and the inputs as literals."""

    transport: Transport
    category: TaskCategory
    template: tasks_pb2.TaskTemplate
    literals: literals_pb2.LiteralMap
    metadata_type: type[Any] | None
    via: str
    output_prefix: str
    #: The loop a server of ours runs this connector's calls on (``--wire``), to watch it directly.
    work_loop: asyncio.AbstractEventLoop | None = None


class _Checker:
    """Runs the checks against one target, collecting rows."""

    def __init__(self, target: _Target, timeout: float, lag_threshold: float) -> None:
        self.t = target
        self.timeout, self.lag_threshold = timeout, lag_threshold
        self.rows: dict[str, CheckResult] = {}
        local = target.via == "in-process" or target.work_loop is not None
        self.probe: _LoopLag | _RpcLag = _LoopLag(loop=target.work_loop) if local else _RpcLag(target.transport)

    def row(self, check: str, status: str, reason: str, duration: float = 0.0) -> None:
        self.rows[check] = CheckResult(check, status, reason, duration, self.t.via)

    async def timed(self, check: str, body: Callable[[], Awaitable[tuple[str, str]]]) -> None:
        start = time.monotonic()
        try:
            status, reason = await body()
        except Exception as e:
            status, reason = FAIL, _reason(e)
        self.row(check, status, reason, time.monotonic() - start)

    async def call(self, method: str, coro: Awaitable[Any]) -> Any:
        async with self.probe.watch(method):
            return await coro

    async def create(self, run_id: str | None = None) -> bytes:
        from .template import execution_metadata

        metadata = execution_metadata(self.t.template, run_id or f"check-{uuid.uuid4().hex[:12]}")
        return bytes(await self.call("create", self.t.transport.create(
            self.t.template, self.t.literals, self.t.output_prefix, metadata)))

    async def get(self, meta: bytes) -> Resource:
        resource: Resource = await self.call("get", self.t.transport.get(self.t.category, meta, self.t.output_prefix))
        return resource

    async def delete(self, meta: bytes) -> None:
        await self.call("delete", self.t.transport.delete(self.t.category, meta))

    async def until_terminal(self, meta: bytes, bound: float, seen: list[Resource]) -> Resource:
        deadline, interval = time.monotonic() + bound, 0.01
        while True:
            resource = await self.get(meta)
            seen.append(resource)
            if is_terminal(resource.phase) or time.monotonic() >= deadline:
                return resource
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, 0.25)

    async def run(self) -> list[CheckResult]:
        await self.probe.start()
        try:
            await self._all()
        finally:
            await self.probe.stop()
        self._lag_row()
        return [self.rows[c] for c in CHECKS if c in self.rows]

    async def _all(self) -> None:
        meta = await self._create_check()
        if meta is None:
            for check in CHECKS[1:]:
                if check != "event_loop":
                    self.row(check, FAIL, "not run: create did not return usable metadata")
            return
        final = await self._run_checks(meta)
        await self._after_completion(meta, final)
        await self._delete_checks()
        await self.timed("create_retry_safe", self._retry_check)

    async def _create_check(self) -> bytes | None:
        start = time.monotonic()
        try:
            meta = await self.create()
        except Exception as e:
            self.row("create_returns_metadata", FAIL, _reason(e), time.monotonic() - start)
            return None
        status, reason = self._meta_verdict(meta)
        self.row("create_returns_metadata", status, reason, time.monotonic() - start)
        return meta

    def _meta_verdict(self, meta: bytes) -> tuple[str, str]:
        kind = self.t.metadata_type
        if kind is None:
            return PASS, f"{len(meta)} bytes (remote service: type not checked)"
        try:
            decoded = kind.decode(meta)
        except ConnectorNbError as e:
            return FAIL, f"create returned metadata that is not a {kind.__name__}: {_reason(e)}"
        if not isinstance(decoded, kind) or decoded.encode() != meta:
            return FAIL, f"{kind.__name__} does not round-trip: decode(encode(meta)) differs"
        return PASS, f"{kind.__name__}, encoding round-trips ({len(meta)} bytes)"

    async def _run_checks(self, meta: bytes) -> Resource | None:
        seen: list[Resource] = []
        start = time.monotonic()
        final: Resource | None = None
        try:
            final = await self.until_terminal(meta, self.timeout, seen)
        except Exception as e:
            self.row("get_valid_phase", FAIL, _reason(e), time.monotonic() - start)
            self.row("reaches_terminal", FAIL, "not run: get failed")
        else:
            self._phase_rows(seen, final, time.monotonic() - start)
        await self.timed("logs", lambda: self._logs_check(meta))
        await self.timed("metrics", lambda: self._metrics_check(meta))
        await self.timed("log_links", lambda: self._links_check(seen))
        return final

    def _phase_rows(self, seen: list[Resource], final: Resource, took: float) -> None:
        """``get_valid_phase`` (a warning when a phase goes backwards) and ``reaches_terminal``."""
        back = next(((a.phase, b.phase) for a, b in itertools.pairwise(seen)
                     if phase_rank(b.phase) < phase_rank(a.phase)), None)
        if back:  # sessions keep such a run (flagged), but Flyte's UI shows it oddly: worth a look
            self.row("get_valid_phase", WARN, f"phase went backwards: {back[0]} -> {back[1]}", took)
        else:
            phases = ", ".join(dict.fromkeys(r.phase for r in seen))
            self.row("get_valid_phase", PASS, f"phases seen: {phases}", took)
        if is_terminal(final.phase):
            self.row("reaches_terminal", PASS, f"{final.phase} after {took:.2f} s", took)
        else:
            self.row("reaches_terminal", FAIL, f"still {final.phase} after {self.timeout:g} s (the bound)", took)

    async def _after_completion(self, meta: bytes, final: Resource | None) -> None:
        if final is None or not is_terminal(final.phase):
            for check in ("get_after_completion", "delete_after_completion"):
                self.row(check, FAIL, "not run: the run did not finish")
            await self._quietly(self.delete(meta))
            return
        await self.timed("get_after_completion", lambda: self._stays_terminal(meta, final.phase, "after completion"))

        async def delete_done() -> tuple[str, str]:
            await self.delete(meta)
            return await self._stays_terminal(meta, final.phase, "after deleting the finished job")

        await self.timed("delete_after_completion", delete_done)

    async def _stays_terminal(self, meta: bytes, before: str, when: str) -> tuple[str, str]:
        phases = [(await self.get(meta)).phase for _ in range(2)]
        if not all(is_terminal(p) for p in phases):
            return FAIL, f"get {when} went from {before} to {', '.join(phases)}"
        return PASS, f"{' -> '.join([before, *phases])}"

    async def _delete_checks(self) -> None:
        start = time.monotonic()
        try:
            meta = await self.create()
        except Exception as e:
            self.row("delete_idempotent", FAIL, f"not run: second create failed: {_reason(e)}")
            self.row("get_after_delete", FAIL, "not run: second create failed")
            return
        try:
            await self.delete(meta)
        except Exception as e:
            self.row("delete_idempotent", FAIL, f"first delete failed: {_reason(e)}", time.monotonic() - start)
        else:
            try:
                await self.delete(meta)
            except Exception as e:
                self.row("delete_idempotent", FAIL, f"second delete in a row failed: {_reason(e)}",
                         time.monotonic() - start)
            else:
                self.row("delete_idempotent", PASS, "deleted twice in a row without error", time.monotonic() - start)

        async def after_delete() -> tuple[str, str]:
            resource = await self.until_terminal(meta, min(self.timeout, 10.0), [])
            if not is_terminal(resource.phase):
                return FAIL, f"get after delete still {resource.phase} after {min(self.timeout, 10.0):g} s"
            return await self._stays_terminal(meta, resource.phase, "after delete")

        await self.timed("get_after_delete", after_delete)

    async def _logs_check(self, meta: bytes) -> tuple[str, str]:
        token, tokens, lines = "", [""], 0
        for pages in range(1, MAX_LOG_PAGES + 1):
            next_token = ""
            try:
                async with self.probe.watch("get_logs"):
                    async for response in self.t.transport.get_logs(self.t.category, meta, 0, token):
                        if response.HasField("header"):
                            next_token = response.header.token
                        elif response.HasField("body"):
                            lines += len(response.body.results) or len(response.body.structured_lines)
            except NotSupportedError:
                return PASS, "absent (the connector has no logs)"
            if not next_token or next_token == token:  # the same token back: caught up, come back later
                return PASS, f"{lines} lines in {pages} page(s)"
            if next_token in tokens:
                return FAIL, f"page {pages} returns token {next_token!r} again: the pages never end"
            tokens.append(next_token)
            token = next_token
        return FAIL, f"more than {MAX_LOG_PAGES} log pages"

    async def _metrics_check(self, meta: bytes) -> tuple[str, str]:
        try:
            response = await self.call("get_metrics", self.t.transport.get_metrics(self.t.category, meta))
        except NotSupportedError:
            return PASS, "absent (the connector has no metrics)"
        problem = metrics_problem(response)
        if problem:
            return FAIL, f"not a Prometheus-style result: {problem}"
        names = sorted({r.metric for r in response.results})
        return PASS, f"{len(response.results)} result(s): {', '.join(names) or 'none'}"

    async def _links_check(self, seen: list[Resource]) -> tuple[str, str]:
        links = {(link.name, link.uri) for r in seen for link in r.log_links}
        for name, uri in sorted(links):
            problem = uri_problem(uri)
            if problem:
                return FAIL, f"log link {name!r} has a malformed URI {mask(uri)!r}: {problem}"
        return PASS, f"{len(links)} well-formed link(s)" if links else "no log links"

    async def _retry_check(self) -> tuple[str, str]:
        run_id = f"check-retry-{uuid.uuid4().hex[:12]}"
        first = await self.create(run_id)
        second = await self.create(run_id)
        for meta in {first, second}:
            await self._quietly(self.delete(meta))
        if first == second:
            return PASS, "a repeated create with the same execution id returns the same job"
        return WARN, ("a repeated create with the same execution id started a second job: deduplicate on "
                      "task_execution_metadata's execution name if a runner may retry create")

    def _lag_row(self) -> None:
        worst = self.probe.worst
        blocked = sorted((m for m, lag in worst.items() if lag > self.lag_threshold), key=lambda m: -worst[m])
        if blocked:
            text = ", ".join(f"{m} blocked it {worst[m]:.2f} s" for m in blocked)
            self.row("event_loop", FAIL, f"{text} (threshold {self.lag_threshold:g} s): use await, or a "
                                         "def method (run in a thread)")
        else:
            top = max(worst.items(), key=lambda kv: kv[1], default=("none", 0.0))
            self.row("event_loop", PASS, f"no method held the loop over {self.lag_threshold:g} s "
                                         f"(worst: {top[0]} {top[1]:.3f} s)")

    @staticmethod
    async def _quietly(coro: Awaitable[Any]) -> None:
        try:
            await coro
        except Exception:  # cleanup of a job the checks are done with: its failure is reported elsewhere
            pass


# ------------------------------------------------------------------------------------------ entry points


def _connector_of(connector: Any, registry: ConnectorRegistry | None, version: int) -> AsyncConnector[Any]:
    """The connector to check: a task type from ``registry``, or whatever ``ConnectorRegistry.register`` accepts
    (a connector class or instance, or a foreign connector an adapter wraps), as registered."""
    from .registry import ConnectorRegistry

    if isinstance(connector, str):
        return (registry or ConnectorRegistry.default()).get_connector(connector, version)
    try:
        return ConnectorRegistry().register(connector)
    except TypeError as e:
        raise TypeError(f"connector: {e}; or give a registered task type name") from None


async def _check_via(
    transport: Transport, via: str, task: str | tasks_pb2.TaskTemplate, version: int, inputs: Mapping[str, Any],
    custom: Mapping[str, Any] | None, defaults: Mapping[str, Any], metadata_type: type[Any] | None,
    timeout: float, lag_threshold: float, *, work_loop: asyncio.AbstractEventLoop | None = None,
) -> list[CheckResult]:
    from .template import bind_inputs

    try:
        category, template, found = await transport.resolve(task, version, custom, inputs)
        literals = bind_inputs(template, inputs, {**found, **defaults})
        with tempfile.TemporaryDirectory(prefix="connector-nb-check-") as prefix:
            target = _Target(transport, category, template, literals, metadata_type, via, prefix, work_loop)
            return await _Checker(target, timeout, lag_threshold).run()
    finally:
        await transport.aclose()


def _options(inputs: Mapping[str, Any] | None, timeout: Any, lag_threshold: Any) -> dict[str, Any]:
    """The inputs as a dict, after checking the numeric options (TypeError/ValueError naming the field)."""
    if inputs is not None and not isinstance(inputs, Mapping):
        raise TypeError(f"inputs: expected a mapping of input name to value, got {type(inputs).__name__}")
    for name, value in (("timeout", timeout), ("lag_threshold", lag_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name}: expected a number of seconds, got {type(value).__name__}")
        if not 0 < value < float("inf"):
            raise ValueError(f"{name}: expected a positive finite number of seconds, got {value!r}")
    return dict(inputs or {})


async def check_connector_async(
    connector: AsyncConnector[Any] | type[AsyncConnector[Any]] | str,
    inputs: Mapping[str, Any] | None = None,
    custom: Mapping[str, Any] | None = None,
    *,
    registry: ConnectorRegistry | None = None,
    version: int = 0,
    target: str | None = None,
    wire: bool = False,
    timeout: float = 60.0,
    lag_threshold: float = LAG_THRESHOLD,
) -> CheckReport:
    """The awaitable form of :func:`check_connector` (runs on the calling loop)."""
    from .secrets import secret_values
    from .transports import make_transport

    values = _options(inputs, timeout, lag_threshold)
    secret_values(values)  # remembered, so every reason and error masks them
    if target is not None:  # a remote service: only the task type is known here
        if not isinstance(connector, str):
            raise TypeError("connector: with target=..., give the task type name as a str")
        rows = await _check_via(make_transport(target), "grpc", connector, version, values, custom, {}, None,
                                timeout, lag_threshold)
        return CheckReport(connector, rows)
    instance = _connector_of(connector, registry, version)
    from .registry import ConnectorRegistry

    own = ConnectorRegistry([instance])  # served alone under --wire
    task = instance.task_template(custom)
    common = (instance.task_type_version, values, custom, dict(instance.input_defaults), instance.metadata_type,
              timeout, lag_threshold)
    rows = await _check_via(make_transport(None, own), "in-process", task, *common)
    if wire:
        rows += await _served(own, task, common)
    return CheckReport(instance.task_type_name, rows)


async def _served(registry: ConnectorRegistry, task: tasks_pb2.TaskTemplate, common: tuple[Any, ...]) -> list[
        CheckResult]:
    from .server import serve
    from .transports import make_transport

    handle = await asyncio.to_thread(serve, registry, port=0, host="127.0.0.1", block=False)
    try:
        return await _check_via(make_transport(handle.target), "grpc", task, *common,
                                work_loop=handle.connector_loop)
    finally:
        await asyncio.to_thread(handle.stop, 1.0)


def check_connector(
    connector: AsyncConnector[Any] | type[AsyncConnector[Any]] | str,
    inputs: Mapping[str, Any] | None = None,
    custom: Mapping[str, Any] | None = None,
    **options: Any,
) -> CheckReport:
    """Launch real runs of ``connector`` and judge it: one row per check (pass, fail or warn).

    ``connector`` is a connector instance or class, or a task type registered in ``registry`` (default:
    the default registry). ``inputs``/``custom`` are what each test run is launched with; keep the job
    short. Options: ``wire=True`` also serves it on 127.0.0.1 and runs every check through gRPC;
    ``target="grpc://..."`` checks a task type on a running service instead; ``timeout`` bounds each run
    (seconds, default 60); ``lag_threshold`` is how long a method may block the event loop.
    Safe in a notebook: the checks run on their own loop in a helper thread.
    """
    import concurrent.futures

    coro = check_connector_async(connector, inputs, custom, **options)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="connector-nb-check") as pool:
        return pool.submit(asyncio.run, coro).result()


__all__ = ["CHECKS", "CheckReport", "CheckResult", "check_connector", "check_connector_async", "metrics_problem",
           "uri_problem"]
