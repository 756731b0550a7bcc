"""Serve a ConnectorRegistry as a Flyte connector service over gRPC (like ``pyflyte serve connector``).

Each RPC is translated into a call on a :class:`LocalTransport`, so connectors behave exactly as in an
in-process session; results and errors are translated to gRPC through the one table in ``_status``.

Two loops, each an :class:`~connector_nb._engine.Engine` thread: the gRPC server (and health) runs on one,
connector calls on the other, each under a deadline. A slow or loop-hogging connector therefore never
delays health checks. Serving is safe by default: only what it is given (``modules``, installed entry
points, the examples with ``examples=True``), never ``shell`` without ``allow_shell=True``, and a
non-loopback host only with TLS and a bearer token.

Status codes (the table is ``_status.ERROR_CODES``): INVALID_ARGUMENT for a malformed request (the detail
names the field), NOT_FOUND for an unknown task type, UNIMPLEMENTED when a connector has no metrics or logs,
DEADLINE_EXCEEDED past ``ServeLimits.call_timeout``, RESOURCE_EXHAUSTED for a message over
``max_message_bytes``, UNAUTHENTICATED without the right token, and INTERNAL only when the connector itself
failed (detail ``ExcType: message``).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import hmac
import html
import importlib
import importlib.util
import ipaddress
import logging
import os
import sys
import threading
import time
import types
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Coroutine, Iterable, TypeVar

from . import _status
from ._engine import Engine, await_on, in_loop_thread, run_blocking
from ._tls import read_pem
from .errors import (
    CallTimeoutError,
    ConnectorCallError,
    ConnectorNbError,
    InputError,
    LimitExceededError,
    MetadataError,
    ServeRefusedError,
    UnknownTaskTypeError,
)
from .registry import ENTRY_POINT_GROUP, ConnectorRegistry
from .secrets import mask
from .transports.base import TaskCategory

if TYPE_CHECKING:
    import grpc
    import grpc.aio
    from flyteidl.admin import agent_pb2

    from .connector import AsyncConnector
    from .transports.local import LocalTransport

log = logging.getLogger(__name__)
R = TypeVar("R")
#: Our own examples' entry point: served only with ``examples=True`` (``--examples``).
_EXAMPLES_ENTRY_POINT = "connector_nb.examples"
_HEALTH_PREFIX = "/grpc.health.v1.Health/"


@dataclasses.dataclass(frozen=True)
class ServeLimits:
    """Bounds on the work one call may cause: wire-supplied metadata is untrusted."""

    #: Largest request or response message (grpc max message options); bigger is RESOURCE_EXHAUSTED.
    max_message_bytes: int = 16 * 1024 * 1024
    #: Largest ``resource_meta`` a request may carry; bigger is INVALID_ARGUMENT.
    max_meta_bytes: int = 256 * 1024
    #: Longest task type name or ``output_prefix``; longer is INVALID_ARGUMENT.
    max_name_chars: int = 4096
    #: Log lines per GetTaskLogs stream (more are cut; ``lines`` asked for is clamped to this).
    max_log_lines: int = 10_000
    #: Metric samples per GetTaskMetrics response (more are cut; a query asking for more is refused).
    max_metric_samples: int = 11_000
    #: Seconds one connector call may take (also bounded by the caller's own deadline).
    call_timeout: float = 60.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"ServeLimits.{field.name} must be a positive number, got {value!r}")

    def grpc_options(self) -> list[tuple[str, int]]:
        """grpc server options that enforce the message bound."""
        return [("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.max_send_message_length", self.max_message_bytes)]


#: (connector loop, limits) of the server being started. Set by ``_start_serving`` in its own task, so that
#: ``_start`` builds the servicer (and the v2 handlers beside it) exactly as before.
_SERVING: contextvars.ContextVar[tuple[asyncio.AbstractEventLoop, ServeLimits]] = contextvars.ContextVar(
    "connector_nb_serving")
_MAX_DETAIL = 2000  # characters of a status detail: an error quoting a huge value must not make a huge trailer


def _category(request: Any, limits: ServeLimits) -> TaskCategory:
    """The task category of a request, as propeller fills it (falls back to the deprecated task_type)."""
    if request.HasField("task_category") and request.task_category.name:
        name, version, field = request.task_category.name, request.task_category.version, "task_category.name"
    else:
        name, version, field = request.task_type, 0, "task_type"
    if not name:
        raise InputError("task_category.name: required (the task type name), got an empty string")
    _check_length(field, name, limits)
    return TaskCategory(name, version)


def _check_length(field: str, value: str, limits: ServeLimits) -> None:
    if len(value) > limits.max_name_chars:
        raise InputError(f"{field}: {len(value)} characters, more than the limit of {limits.max_name_chars}")


def _meta(request: Any, limits: ServeLimits) -> bytes:
    """The request's resource_meta bytes, refused when larger than the limit (they are untrusted)."""
    data: bytes = request.resource_meta
    if len(data) > limits.max_meta_bytes:
        raise MetadataError(f"resource_meta: {len(data)} bytes, more than the limit of {limits.max_meta_bytes}")
    return data


def _classified(error: BaseException, field: str) -> BaseException:
    """Our error for ``error``. LocalTransport wraps every connector failure, so anything else that is not
    ours came from reading the request (deep JSON, wrong types, huge values): the caller's fault."""
    if isinstance(error, (ConnectorNbError, MemoryError)):
        return error
    cls = MetadataError if field == "resource_meta" else InputError
    return cls(f"{field}: {type(error).__name__}: {error}"[:_MAX_DETAIL])


def _masked(error: BaseException, inputs: Any) -> BaseException:
    """The error with secret-named input values masked, before it reaches a log line or the wire."""
    from .literals import to_python_dict
    from .secrets import mask_error

    try:
        values = to_python_dict(inputs)
    except Exception:  # inputs that do not even convert carry nothing we could mask by name
        return error
    return mask_error(error, values)


def _cut_logs(response: Any, budget: int) -> int:
    """Cut a GetTaskLogs body to ``budget`` lines; the budget left afterwards."""
    if response.WhichOneof("part") != "body":
        return budget
    results = response.body.results
    if len(results) > budget:
        del results[budget:]
    return budget - len(results)


def _cut_samples(response: Any, budget: int) -> None:
    """Cut the Prometheus-style ``values`` of every series so the response holds at most ``budget`` samples."""
    for result in response.results:
        series = result.data.fields.get("result")
        for item in series.list_value.values if series is not None else ():
            values = item.struct_value.fields.get("values")
            if values is None:
                continue
            samples = values.list_value.values
            if len(samples) > budget:
                del samples[budget:]
            budget -= len(samples)


class _AgentServicer:
    """``AsyncAgentService`` and ``AgentMetadataService``, backed by a LocalTransport on another loop."""

    def __init__(self, transport: LocalTransport) -> None:
        from flyteidl.admin import agent_pb2

        self._t = transport
        self._work, self._limits = _SERVING.get()
        self._pb = agent_pb2

    async def _run(self, context: grpc.aio.ServicerContext, method: str, task_type: str,
                   coro: Coroutine[Any, Any, R]) -> R:
        """Run ``coro`` on the connector loop within the call deadline (ours, or the caller's if sooner)."""
        remaining = context.time_remaining()
        timeout = min(self._limits.call_timeout, remaining if remaining is not None else float("inf"))
        try:
            return await asyncio.wait_for(await_on(coro, self._work), timeout)
        except asyncio.TimeoutError:
            raise CallTimeoutError(method, task_type, timeout) from None

    async def _abort(self, context: grpc.aio.ServicerContext, method: str, error: BaseException, field: str,
                     inputs: Any = None) -> None:
        import grpc

        error = _classified(error, field)
        if inputs is not None:
            error = _masked(error, inputs)
        code = grpc.StatusCode[_status.code_name(error)]
        details = mask(_status.detail(error))[:_MAX_DETAIL]  # by value: a declared secret, a URL password
        log.info("%s -> %s: %s", method, code.name, details)
        await context.abort(code, details)

    def _sized(self, response: R, method: str, task_type: str) -> R:
        size = response.ByteSize()  # type: ignore[attr-defined]
        if size > self._limits.max_message_bytes:
            raise LimitExceededError(f"the {task_type!r} connector's {method}() response is {size} bytes, more "
                                     f"than the service's limit of {self._limits.max_message_bytes}")
        return response

    async def CreateTask(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Create the job; the connector's resource metadata goes back as bytes."""
        metadata = request.task_execution_metadata if request.HasField("task_execution_metadata") else None
        try:
            if not request.template.type:
                raise InputError("template.type: required (the task type name), got an empty string")
            _check_length("template.type", request.template.type, self._limits)
            _check_length("output_prefix", request.output_prefix, self._limits)
            coro = self._t.create(request.template, request.inputs, request.output_prefix, metadata)
            meta = await self._run(context, "create", request.template.type, coro)
        except Exception as e:
            await self._abort(context, "CreateTask", e, "inputs", request.inputs)
        return self._sized(self._pb.CreateTaskResponse(resource_meta=meta), "create", request.template.type)

    async def GetTask(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Phase, message, outputs and log links of the job."""
        try:
            category, meta = _category(request, self._limits), _meta(request, self._limits)
            _check_length("output_prefix", request.output_prefix, self._limits)
            pb = await self._run(context, "get", category.name, self._get(category, meta, request.output_prefix))
            return self._sized(self._pb.GetTaskResponse(resource=pb), "get", category.name)
        except Exception as e:
            await self._abort(context, "GetTask", e, "resource_meta")

    async def _get(self, category: TaskCategory, meta: bytes, output_prefix: str) -> agent_pb2.Resource:
        # On the connector loop: converting big outputs must not hold up the server loop either.
        resource = await self._t.get(category, meta, output_prefix)
        output_types = self._t.connector(category).output_types if resource.outputs is not None else None
        try:
            return resource.masked().to_flyte_idl(output_types)
        except Exception as e:  # outputs the connector returned do not convert: its fault, not the caller's
            raise ConnectorCallError("get", category.name, e) from e

    async def DeleteTask(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Cancel the job."""
        try:
            category, meta = _category(request, self._limits), _meta(request, self._limits)
            await self._run(context, "delete", category.name, self._t.delete(category, meta))
        except Exception as e:
            await self._abort(context, "DeleteTask", e, "resource_meta")
        return self._pb.DeleteTaskResponse()

    async def GetTaskMetrics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """The job's metrics, at most ``max_metric_samples`` samples."""
        try:
            category, meta = _category(request, self._limits), _meta(request, self._limits)
            start, end, step = self._metric_window(request)
            coro = self._t.get_metrics(category, meta, list(request.queries), start, end, step)
            response = await self._run(context, "get_metrics", category.name, coro)
            _cut_samples(response, self._limits.max_metric_samples)
            return self._sized(response, "get_metrics", category.name)
        except Exception as e:
            await self._abort(context, "GetTaskMetrics", e, "resource_meta")

    def _metric_window(self, request: Any) -> tuple[Any, Any, Any]:
        """(start, end, step) of a metrics request; refused when it asks for more samples than the limit."""
        from datetime import timezone

        def read(field: str, convert: Callable[[Any], Any]) -> Any:
            if not request.HasField(field):
                return None
            try:
                return convert(getattr(request, field))
            except (ValueError, OverflowError, TypeError) as e:
                raise InputError(f"{field}: out of range ({e})") from None

        start = read("start_time", lambda t: t.ToDatetime(tzinfo=timezone.utc))
        end = read("end_time", lambda t: t.ToDatetime(tzinfo=timezone.utc))
        step = read("step", lambda d: d.ToTimedelta())
        if step is not None and step.total_seconds() <= 0:
            raise InputError(f"step: must be positive, got {step.total_seconds():g} s")
        if start is not None and end is not None and step is not None:
            samples = (end - start).total_seconds() / step.total_seconds()
            if samples > self._limits.max_metric_samples:
                raise InputError(f"step: {samples:.0f} samples per series between start_time and end_time, more "
                                 f"than the limit of {self._limits.max_metric_samples}; use a larger step")
        return start, end, step

    async def GetTaskLogs(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        """A real server stream, at most ``max_log_lines`` lines, each part fetched on the connector loop."""
        budget = self._limits.max_log_lines
        try:
            category, meta = _category(request, self._limits), _meta(request, self._limits)
            lines = request.lines if 0 < request.lines <= budget else budget
            _check_length("token", request.token, self._limits)
            stream = self._t.get_logs(category, meta, lines, request.token)
            try:
                while budget > 0:
                    part = await self._run(context, "get_logs", category.name, _next(stream))
                    if part is None:
                        break
                    budget = _cut_logs(self._sized(part, "get_logs", category.name), budget)
                    yield part
            finally:
                await await_on(_close(stream), self._work)
        except Exception as e:
            await self._abort(context, "GetTaskLogs", e, "resource_meta")

    async def ExecuteTaskSync(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
                              ) -> AsyncIterator[Any]:
        """``SyncAgentService``: a header and the inputs in; one header with the final Resource (outputs in it) out."""
        inputs = None
        try:
            header, inputs = await _sync_request(requests, self._limits)
            template = header.template
            metadata = header.task_execution_metadata if header.HasField("task_execution_metadata") else None
            coro = self._execute_sync(template, inputs, header.output_prefix, metadata)
            pb = await self._run(context, "execute_sync", template.type, coro)
            response = self._pb.ExecuteTaskSyncResponse(header=self._pb.ExecuteTaskSyncResponseHeader(resource=pb))
            yield self._sized(response, "execute_sync", template.type)
        except Exception as e:
            await self._abort(context, "ExecuteTaskSync", e, "inputs", inputs)

    async def _execute_sync(self, template: Any, inputs: Any, output_prefix: str, metadata: Any) -> agent_pb2.Resource:
        # On the connector loop, like _get: the connector runs there and big outputs convert there.
        from .template import interface_types

        category = TaskCategory.of(template)
        resource = await self._t.execute_sync(template, inputs, output_prefix, metadata)
        output_types = interface_types(template)[1] or self._t.connector(category).output_types
        try:
            return resource.masked().to_flyte_idl(output_types if resource.outputs is not None else None)
        except Exception as e:  # outputs the connector returned do not convert: its fault, not the caller's
            raise ConnectorCallError("do", category.name, e) from e

    async def ListAgents(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Every connector this service offers."""
        return self._pb.ListAgentsResponse(agents=self._agents())

    async def GetAgent(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """One connector by name; NOT_FOUND lists the names there are."""
        import grpc

        for agent in self._agents():
            if agent.name == request.name:
                return self._pb.GetAgentResponse(agent=agent)
        names = ", ".join(repr(a.name) for a in self._agents()) or "none"
        await context.abort(grpc.StatusCode.NOT_FOUND,
                            f"no connector named {request.name[:200]!r}; registered: {names}"[:_MAX_DETAIL])

    def _agents(self) -> list[agent_pb2.Agent]:
        """One Agent per connector name, listing every category it handles (as flytekit does)."""
        agents: dict[str, agent_pb2.Agent] = {}
        for c in self._t.registry.list_connectors():
            agent = agents.setdefault(c.name, self._pb.Agent(name=c.name, is_sync=bool(getattr(c, "is_sync", False))))
            agent.supported_task_types.append(c.task_type_name)
            agent.supported_task_categories.add(name=c.task_type_name, version=int(c.task_type_version))
        return list(agents.values())


async def _sync_request(requests: AsyncIterator[Any], limits: ServeLimits) -> tuple[Any, Any]:
    """(header, inputs) of an ExecuteTaskSync request stream: a header first, then the inputs (absent: none)."""
    from flyteidl.core import literals_pb2

    first = await _next(requests)
    if first is None or first.WhichOneof("part") != "header":
        raise InputError("header: the first ExecuteTaskSync message must be the header (template, output_prefix)")
    header = first.header
    if not header.template.type:
        raise InputError("header.template.type: required (the task type name), got an empty string")
    _check_length("header.template.type", header.template.type, limits)
    _check_length("header.output_prefix", header.output_prefix, limits)
    second = await _next(requests)  # flytekit's service reads exactly one more; propeller always sends it
    if second is not None and second.WhichOneof("part") != "inputs":
        raise InputError("inputs: the second ExecuteTaskSync message must carry the inputs, got another header")
    return header, second.inputs if second is not None else literals_pb2.LiteralMap()


async def _next(stream: AsyncIterator[R]) -> R | None:
    """The stream's next item, None at its end (StopAsyncIteration cannot cross loops as a result)."""
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return None


async def _close(stream: AsyncIterator[Any]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


# -- the interceptor: requests that do not parse, and the bearer token ------------------------------


def _authorized(metadata: Any, expected: bytes) -> bool:
    """Whether the call carries ``authorization: Bearer <token>``, compared in constant time."""
    for key, value in metadata or ():
        if key == "authorization":
            got = value if isinstance(value, bytes) else str(value).encode()
            return hmac.compare_digest(got, expected)
    return False


def _wrapped(handler: Any, behaviour: Callable[[Any, Any, Callable[..., Any]], Any]) -> Any:
    """``handler`` with raw-bytes requests, each call going through ``behaviour(raw, context, original)``."""
    import grpc

    original = handler.unary_unary or handler.unary_stream
    if original is None:  # streaming requests: none in the services we serve
        return handler
    if handler.unary_unary is not None:
        async def unary(raw: bytes, context: Any) -> Any:
            return await behaviour(raw, context, original)

        return grpc.unary_unary_rpc_method_handler(unary, None, handler.response_serializer)
    if not _is_async_gen(original):  # e.g. health's Watch writes with context.write()
        async def writer(raw: bytes, context: Any) -> Any:
            return await behaviour(raw, context, original)

        return grpc.unary_stream_rpc_method_handler(writer, None, handler.response_serializer)

    async def stream(raw: bytes, context: Any) -> AsyncIterator[Any]:
        async for item in await behaviour(raw, context, original):
            yield item

    return grpc.unary_stream_rpc_method_handler(stream, None, handler.response_serializer)


def _guarded_stream(handler: Any, allowed: bool) -> Any:
    """A bidirectional-stream ``handler`` behind the guard: UNAUTHENTICATED unless ``allowed``; requests that do
    not parse raise InputError into the servicer, which answers INVALID_ARGUMENT."""
    import grpc

    parse, original = handler.request_deserializer, handler.stream_stream

    async def parsed(raw_requests: AsyncIterator[bytes]) -> AsyncIterator[Any]:
        async for raw in raw_requests:
            try:
                yield parse(raw) if parse is not None else raw
            except Exception as e:
                raise InputError(f"request: not a valid message ({type(e).__name__}: {e})"[:_MAX_DETAIL]) from None

    async def stream(raw_requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[Any]:
        if not allowed:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing or wrong bearer token (send metadata 'authorization: Bearer <token>')")
        async for item in original(parsed(raw_requests), context):
            yield item

    return grpc.stream_stream_rpc_method_handler(stream, None, handler.response_serializer)


def _is_async_gen(fn: Any) -> bool:
    import inspect

    return inspect.isasyncgenfunction(fn) or inspect.isasyncgenfunction(getattr(fn, "__func__", None))


def _guard(token: str | None) -> Any:
    """A server interceptor: INVALID_ARGUMENT for requests that do not parse (grpc would say UNKNOWN), and,
    with ``token``, UNAUTHENTICATED for calls without ``authorization: Bearer <token>`` (health stays open)."""
    import grpc
    import grpc.aio

    expected = f"Bearer {token}".encode() if token is not None else None

    async def deny(raw: bytes, context: Any, original: Any) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                            "missing or wrong bearer token (send metadata 'authorization: Bearer <token>')")

    def parsing(parse: Callable[[bytes], Any]) -> Callable[[bytes, Any, Any], Awaitable[Any]]:
        async def call(raw: bytes, context: Any, original: Any) -> Any:
            try:
                request = parse(raw)
            except Exception as e:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"request: not a valid message ({type(e).__name__}: {e})"[:_MAX_DETAIL])
            return original(request, context) if _is_async_gen(original) else await original(request, context)

        return call

    class Guard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
        async def intercept_service(self, continuation: Any, details: Any) -> Any:
            handler = await continuation(details)
            if handler is None:
                return None
            health = details.method.startswith(_HEALTH_PREFIX)
            allowed = expected is None or health or _authorized(details.invocation_metadata, expected)
            if handler.stream_stream is not None:  # ExecuteTaskSync
                return _guarded_stream(handler, allowed)
            if not allowed:
                return _wrapped(handler, deny)
            if handler.request_deserializer is None:
                return handler
            return _wrapped(handler, parsing(handler.request_deserializer))

    return Guard()


# -- what is served ---------------------------------------------------------------------------------


def _shell(connector: AsyncConnector[Any]) -> bool:
    from .examples.shell import ShellConnector

    return isinstance(connector, ShellConnector) or connector.task_type_name == "shell"


class _Served(ConnectorRegistry):
    """A live view of registries, as served: ``shell`` hidden unless allowed (it runs any command)."""

    def __init__(self, sources: list[ConnectorRegistry], allow_shell: bool) -> None:
        super().__init__()
        self._sources = sources
        self._allow_shell = allow_shell

    def list_connectors(self) -> list[AsyncConnector[Any]]:
        """Every served connector, first source first."""
        seen: dict[tuple[str, int], AsyncConnector[Any]] = {}
        for source in self._sources:
            for c in source.list_connectors():
                if self._allow_shell or not _shell(c):
                    seen.setdefault((c.task_type_name, int(c.task_type_version)), c)
        return list(seen.values())

    def get_connector(self, task_type_name: str, task_type_version: int = 0) -> AsyncConnector[Any]:
        """The served connector for a task type; UnknownTaskTypeError lists only what is served."""
        key = (task_type_name, int(task_type_version))
        for source in self._sources:
            if key in source:
                connector: AsyncConnector[Any] = source.get_connector(*key)
                if self._allow_shell or not _shell(connector):
                    return connector
                break
        raise UnknownTaskTypeError(task_type_name, int(task_type_version), self.describe())

    def describe(self) -> list[str]:
        """``name (vN)`` of every served connector, sorted."""
        return sorted(f"{c.task_type_name} (v{c.task_type_version})" for c in self.list_connectors())


def installed_registry() -> ConnectorRegistry:
    """Connectors of installed packages (``connector_nb.connectors`` entry points), without our examples."""
    from importlib.metadata import entry_points

    registry = ConnectorRegistry()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.value.startswith(_EXAMPLES_ENTRY_POINT):
            continue  # the examples include shell: never served by accident
        try:
            registry._register_object(ep.load())  # the same rules as ConnectorRegistry.discover
        except Exception as e:  # one broken plugin must not hide the others
            log.warning("could not load connector entry point %r: %s", ep.name, e)
    return registry


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that could resolve anywhere


def check_exposure(host: str, tls: bool, auth_token: str | None) -> None:
    """Refuse (ServeRefusedError) a non-loopback host without both TLS and a token; checked before binding."""
    if not isinstance(host, str) or not host.strip():
        raise ValueError(f"host: expected an address such as '127.0.0.1', got {host!r}")
    if auth_token is not None and not (isinstance(auth_token, str) and auth_token.isascii()
                                       and auth_token.isprintable() and auth_token.strip() == auth_token != ""):
        raise ValueError("auth_token: expected a non-empty printable ASCII string without surrounding spaces")
    if _is_loopback(host):
        return
    missing = [what for what, ok in (("TLS (--tls-cert/--tls-key)", tls),
                                     ("an auth token (--auth-token-env VAR)", auth_token is not None)) if not ok]
    if missing:
        raise ServeRefusedError(f"refusing to serve on non-loopback host {host!r} without {' and '.join(missing)}: "
                                "anyone who reaches it could run the served connectors")


def _tls_pair(certificate: str | bytes | None, private_key: str | bytes | None) -> tuple[bytes, bytes] | None:
    if certificate is None and private_key is None:
        return None
    if certificate is None or private_key is None:
        raise ValueError("TLS needs both certificate and private_key")
    return read_pem(private_key, "private_key"), read_pem(certificate, "certificate")


# -- the server -------------------------------------------------------------------------------------


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


@dataclasses.dataclass(frozen=True)
class _Config:
    registry: ConnectorRegistry
    host: str
    port: int
    tls: tuple[bytes, bytes] | None = dataclasses.field(repr=False)
    auth_token: str | None = dataclasses.field(repr=False)  # a secret: never in a repr or log line
    limits: ServeLimits
    max_workers: int
    options: tuple[tuple[str, Any], ...]
    interceptors: tuple[Any, ...]


async def _start_serving(config: _Config, work: asyncio.AbstractEventLoop) -> tuple[Any, int, LocalTransport]:
    """``_start`` with the connector loop and limits in context (read by ``_AgentServicer``)."""
    _SERVING.set((work, config.limits))
    options = (*config.limits.grpc_options(), *config.options)
    interceptors = (_guard(config.auth_token), *config.interceptors)
    tls = config.tls or (None, None)
    return await _start(config.registry, config.host, config.port, tls[1], tls[0], config.max_workers, options,
                        interceptors)


async def _start(
    registry: ConnectorRegistry, host: str, port: int, certificate: Any, private_key: Any, max_workers: int,
    options: Iterable[tuple[str, Any]], interceptors: Iterable[Any],
) -> tuple[grpc.aio.Server, int, LocalTransport]:
    import grpc
    import grpc.aio
    from flyteidl.service import agent_pb2, agent_pb2_grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from ._v2 import V2_SERVICES, ConnectionTransport, add_v2_handlers

    # One servicer under both flyteidl v1 and flyteidl2 names; v2's Connection reaches connectors as kwargs.
    transport = ConnectionTransport(registry, max_workers=max_workers)
    servicer = _AgentServicer(transport)
    # so_reuseport off: binding a port that is in use must fail, not silently share it.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0), *options], interceptors=list(interceptors) or None)
    agent_pb2_grpc.add_AsyncAgentServiceServicer_to_server(servicer, server)
    agent_pb2_grpc.add_AgentMetadataServiceServicer_to_server(servicer, server)
    agent_pb2_grpc.add_SyncAgentServiceServicer_to_server(servicer, server)  # flyteidl2 has no sync service
    add_v2_handlers(server, servicer)
    health_servicer = health.aio.HealthServicer()
    services = [s.full_name for s in agent_pb2.DESCRIPTOR.services_by_name.values()] + list(V2_SERVICES)
    for name in ("", health.SERVICE_NAME, *services):  # "" is the whole server
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = _host_port(host, port)
    cause: RuntimeError | None = None
    try:
        if certificate is not None or private_key is not None:
            if certificate is None or private_key is None:
                raise ValueError("TLS needs both certificate and private_key")
            pair = (read_pem(private_key, "private_key"), read_pem(certificate, "certificate"))
            bound = server.add_secure_port(address, grpc.ssl_server_credentials([pair]))
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError as e:
        bound, cause = 0, e
    if not bound:
        raise OSError(f"could not listen on {address} (port in use or host not local?): {cause or 'bind failed'}")
    await server.start()
    return server, bound, transport


class ServerHandle:
    """A running connector service: ``.port``, ``.target``, ``.stop()``; a context manager."""

    def __init__(self, host: str, tls: bool, connectors: list[str]) -> None:
        self.host, self.tls, self.connectors = host, tls, connectors
        self.port = 0
        # Two loop threads: the gRPC server (and health) on one, connector calls on the other.
        self._engines = (Engine("connector-nb-server"), Engine("connector-nb-server-calls"))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None
        self._transport: LocalTransport | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    @property
    def target(self) -> str:
        """Address to give ``Session(...)``, e.g. ``grpc://127.0.0.1:8000``."""
        return f"{'grpcs' if self.tls else 'grpc'}://{_host_port(self.host, self.port)}"

    @property
    def running(self) -> bool:
        """Whether the service is up."""
        return self._server is not None and not self._stopped.is_set() and self._engines[0].running

    def _launch(self, start: Callable[[asyncio.AbstractEventLoop], Coroutine[Any, Any, Any]]) -> None:
        self._loop = self._engines[0].acquire()
        work = self._engines[1].acquire()
        try:
            self._server, self.port, self._transport = run_blocking(start(work), self._loop)
        except BaseException:
            self._release()
            raise

    def serve_until_interrupted(self) -> None:
        """Block until Ctrl-C (or the service stops), then stop, giving in-flight calls a second."""
        try:
            self.wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop(grace=1.0)

    @property
    def connector_loop(self) -> asyncio.AbstractEventLoop:
        """The loop connector calls run on (apart from the one that answers gRPC and health)."""
        return self._engines[1].loop

    def _release(self) -> None:
        self._stopped.set()
        for engine in self._engines:
            engine.release()

    async def _shutdown(self, grace: float | None) -> None:
        assert self._server is not None and self._transport is not None
        await self._server.stop(grace)
        await self._transport.aclose()

    def stop(self, grace: float | None = None) -> None:
        """Stop serving; in-flight calls get ``grace`` seconds to finish (None: cancelled at once)."""
        with self._lock:
            if self._server is None or self._stopped.is_set() or self._loop is None:
                return
            if in_loop_thread(self._loop):  # from a callback on the server loop: cannot wait for ourselves
                task = self._loop.create_task(self._shutdown(grace))
                task.add_done_callback(lambda _t: self._release())
                return
            try:
                run_blocking(self._shutdown(grace), self._loop, timeout=(grace or 0) + 30)
            finally:
                self._release()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops; True if it did. Interruptible (short waits in a loop)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped.wait(0.25):
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "serving" if self.running else "stopped"
        return f"<ServerHandle {self.target} {state}: {', '.join(self.connectors) or 'no connectors'}>"

    def _repr_html_(self) -> str:
        state = "serving" if self.running else "stopped"
        rows = "".join(f"<li><code>{html.escape(c)}</code></li>" for c in self.connectors) or "<li>none</li>"
        return (f"<div><b>connector service</b> <code>{html.escape(self.target)}</code> ({state})"
                f"<ul>{rows}</ul></div>")


def import_modules(registry: ConnectorRegistry, modules: Iterable[str]) -> list[str]:
    """Import each module (a dotted name or a ``.py`` path) and register its connectors."""
    if os.getcwd() not in sys.path:  # like pyflyte: modules next to where the command runs
        sys.path.append(os.getcwd())
    registered = []
    for name in modules:
        module = _import(name)
        registered += [f"{c.task_type_name} (v{c.task_type_version})" for c in registry.register_module(module)]
    return registered


def _import(name: str) -> types.ModuleType:
    if not name.endswith(".py"):
        return importlib.import_module(name)
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(name))[0], name)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import connector module file {name!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def serve(
    registry: ConnectorRegistry | None = None,
    *,
    port: int = 8000,
    host: str = "127.0.0.1",
    modules: Iterable[str] = (),
    examples: bool = False,
    allow_shell: bool = False,
    certificate: str | bytes | None = None,
    private_key: str | bytes | None = None,
    auth_token: str | None = None,
    max_workers: int = 32,
    block: bool = True,
    options: Iterable[tuple[str, Any]] = (),
    interceptors: Iterable[Any] = (),
    limits: ServeLimits | None = None,
) -> ServerHandle:
    """Serve connectors over gRPC: ``registry``'s, or (None) installed packages' entry points.

    Only what it is given is served: ``modules`` are imported and registered (like ``pyflyte serve connector
    --modules``), the built-in examples only with ``examples=True``, and ``shell`` never without
    ``allow_shell=True``. A host that is not loopback needs TLS (``certificate``/``private_key``) and an
    ``auth_token`` that callers send as ``authorization: Bearer <token>``; otherwise ServeRefusedError, raised
    before anything binds. ``port=0`` picks a free port (see ``handle.port``). ``limits`` bound each call's
    size and time. With ``block=False`` the handle is returned at once; otherwise this returns after
    Ctrl-C/SIGTERM. ``options`` are extra grpc server options, ``interceptors`` extra
    ``grpc.aio.ServerInterceptor`` objects.
    """
    check_exposure(host, certificate is not None and private_key is not None, auth_token)
    tls = _tls_pair(certificate, private_key)
    limits = limits if limits is not None else ServeLimits()
    base = registry if registry is not None else installed_registry()
    import_modules(base, modules)
    sources = [base]
    if examples:
        from .examples import CONNECTORS

        sources.append(ConnectorRegistry(CONNECTORS))
    served = _Served(sources, allow_shell)
    config = _Config(served, host, int(port), tls, auth_token, limits, max_workers, tuple(options),
                     tuple(interceptors))
    handle = ServerHandle(host, tls is not None, served.describe())
    handle._launch(lambda work: _start_serving(config, work))
    if block:
        handle.serve_until_interrupted()
    return handle


__all__ = ["ServeLimits", "ServerHandle", "check_exposure", "import_modules", "installed_registry", "serve"]
