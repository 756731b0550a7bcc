"""gRPC transport: talks to a connector service (ours, flytekit's ``pyflyte serve connector``, Flyte 2's ``c0``).

Requests are filled as Flyte propeller fills them (``task_category`` and the deprecated ``task_type``),
so any connector service that works with Flyte works here. The channel is created lazily on the loop
that first uses it: grpc.aio channels are bound to one event loop.
"""

from __future__ import annotations

import asyncio
import os
import re
import warnings
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Mapping, Sequence, TypeVar

from .._status import QUIET, error_class

# Before grpc is first imported (see _status: grpc core would print INFO lines into the notebook).
os.environ.setdefault("GRPC_VERBOSITY", QUIET)

import grpc
import grpc.aio

from .._tls import read_pem
from .._v2 import METHODS, PROTOCOLS, connection_bytes, message_types, method_path
from ..errors import (
    AuthError,
    CallTimeoutError,
    ConnectorCallError,
    CreateOutcomeUnknownError,
    InputError,
    LimitExceededError,
    MetadataError,
    NotSupportedError,
    ServiceUnavailableError,
    UnknownTaskTypeError,
)
from ..secrets import mask_text
from .base import ConnectorInfo, TaskCategory, Transport

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from flyteidl.admin import agent_pb2
    from flyteidl.core import literals_pb2, tasks_pb2

    from ..connector import Resource

_TARGET = re.compile(r"^(?:(?P<scheme>grpcs?)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/\[\]\s]+)(?::(?P<port>\d{1,5}))?/?$")
_EXPECTED = "expected 'grpc://host:port', 'grpcs://host:port' or 'host:port'"
_CODE = grpc.StatusCode
_TOKEN_ENV = "CONNECTOR_NB_TOKEN"
_T = TypeVar("_T")
#: Short reconnect backoff so a restarted service is picked up within about a second (grpc's default
#: grows to two minutes, far beyond what a notebook user will wait).
_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.enable_retries", 0),  # we retry UNAVAILABLE ourselves, with a clear error at the end
)


def parse_target(target: str) -> tuple[str, bool]:
    """``(host:port, tls)`` of a target; raises ValueError naming the expected form."""
    match = _TARGET.match(target.strip()) if isinstance(target, str) else None
    if match is None:
        raise ValueError(f"bad connector service target {target!r}; {_EXPECTED}")
    tls = match["scheme"] == "grpcs"
    port = match["port"] or ("443" if tls else None)
    if port is None or not 0 < int(port) < 65536:
        raise ValueError(f"bad connector service target {target!r}: missing or invalid port; {_EXPECTED}")
    return f"{match['host']}:{int(port)}", tls


def _metadata(
    metadata: Sequence[tuple[str, str | bytes]] | Mapping[str, str | bytes] | None,
) -> tuple[tuple[str, str | bytes], ...]:
    items = list(metadata.items()) if isinstance(metadata, Mapping) else list(metadata or ())
    pairs = []
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise TypeError("metadata must be a mapping or a sequence of (key, value) pairs with str keys")
        # gRPC rejects upper-case keys at call time with an obscure error: normalise them here.
        pairs.append((item[0].lower(), item[1]))
    return tuple(pairs)


class GrpcTransport(Transport):
    """A connector service over gRPC, speaking flyteidl v1 (``AsyncAgentService``) or Flyte 2's flyteidl2.

    ``protocol``: ``"v1"``, ``"v2"`` or ``"auto"`` (ListAgents, then ListConnectors on UNIMPLEMENTED; remembered).
    ``token`` (default ``$CONNECTOR_NB_TOKEN``) is sent as ``authorization: Bearer <token>``. ``secrets`` and
    ``configs`` fill v2's ``Connection`` on create/get/delete; they never go into the template or inputs.
    ``CreateTask`` is sent at most once: only a call that provably never left is retried.
    """

    def __init__(
        self,
        target: str,
        *,
        protocol: str = "auto",
        token: str | None = None,
        secrets: Mapping[str, str] | None = None,
        configs: Mapping[str, str] | None = None,
        metadata: Sequence[tuple[str, str | bytes]] | Mapping[str, str | bytes] | None = None,
        root_certificates: str | bytes | None = None,
        timeout: float = 10.0,
        retries: int = 5,
        backoff: float = 0.1,
        max_backoff: float = 2.0,
        logs_timeout: float = 60.0,
        server_hostname: str | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.address, tls = parse_target(target)
        if root_certificates is not None and target.strip().startswith("grpc://"):
            raise ValueError(f"root_certificates given for the plaintext target {target!r}; use 'grpcs://'")
        self.tls = tls or root_certificates is not None or server_hostname is not None
        self.target = f"{'grpcs' if self.tls else 'grpc'}://{self.address}"
        self._root_certificates = (
            None if root_certificates is None else read_pem(root_certificates, "root_certificates")
        )
        self._protocol_choice(protocol, secrets, configs)
        user_metadata = _metadata(metadata)
        self._metadata = user_metadata + _authorization(token, user_metadata)
        self.timeout, self.logs_timeout = float(timeout), float(logs_timeout)
        self.retries, self.backoff, self.max_backoff = int(retries), float(backoff), float(max_backoff)
        self._options = _CHANNEL_OPTIONS + tuple(channel_options) + (
            (("grpc.ssl_target_name_override", server_hostname),) if server_hostname else ()
        )
        self._channel: grpc.aio.Channel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._calls: dict[tuple[str, str], Any] = {}
        #: Whether each category's connector is sync, from the last ListAgents (None: not asked yet).
        self._sync: dict[TaskCategory, bool] | None = None

    def _protocol_choice(
        self, protocol: str, secrets: Mapping[str, str] | None, configs: Mapping[str, str] | None
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be 'auto', 'v1' or 'v2'; got {protocol!r}")
        self._secrets, self._configs = _str_map(secrets, "secrets"), _str_map(configs, "configs")
        if protocol == "v1" and (self._secrets or self._configs):
            raise ValueError("secrets/configs travel in flyteidl2's Connection, which protocol='v1' does not have")
        #: What the service speaks: 'v1' or 'v2'; None until 'auto' has asked.
        self.protocol: str | None = None if protocol == "auto" else protocol

    # -- Transport -------------------------------------------------------------------------------

    async def connectors(self) -> list[ConnectorInfo]:
        """What the service offers (v2 connectors are never sync: flyteidl2 has no sync service)."""
        response = await self._list()
        return [
            ConnectorInfo(agent.name, c.name, c.version, agent.is_sync)
            for agent in response.agents
            for c in (agent.supported_task_categories or [TaskCategory(t) for t in agent.supported_task_types])
        ]

    async def create(
        self,
        template: tasks_pb2.TaskTemplate,
        inputs: literals_pb2.LiteralMap,
        output_prefix: str,
        task_execution_metadata: agent_pb2.TaskExecutionMetadata | None = None,
    ) -> bytes:
        """CreateTask, sent at most once; raises CreateOutcomeUnknownError when it may have reached the service."""
        from flyteidl.admin import agent_pb2

        request = agent_pb2.CreateTaskRequest(
            template=template, inputs=inputs, output_prefix=output_prefix,
            task_execution_metadata=task_execution_metadata,
        )
        category = TaskCategory.of(template)
        call = self._callable("CreateTask", await self._protocol())
        await self._connected("create")  # until here nothing was sent: failing is safe
        try:
            response = await call(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as e:
            if e.code() in _MAYBE_RECEIVED:
                detail = f"{e.code().name}: {self._mask(e.details() or '')}"
                raise CreateOutcomeUnknownError(_run_id(request), category.name, detail) from None
            raise await self._error(e, "create", category) from None
        return bytes(response.resource_meta)

    async def is_sync(self, category: TaskCategory) -> bool:
        """Whether ListAgents says the category's connector is sync (cached; asked again for an unseen category)."""
        if self._sync is None or category not in self._sync:
            try:
                await self._list()
            except NotSupportedError:  # a service without the metadata service: only async calls are known
                self._sync = self._sync or {}
        return bool(self._sync and self._sync.get(category, False))

    async def execute_sync(
        self,
        template: tasks_pb2.TaskTemplate,
        inputs: literals_pb2.LiteralMap,
        output_prefix: str,
        task_execution_metadata: agent_pb2.TaskExecutionMetadata | None = None,
    ) -> Resource:
        """ExecuteTaskSync (v1 ``SyncAgentService``), sent at most once: a header, then the inputs; the answer is a
        header with the final Resource, then any further outputs. CreateOutcomeUnknownError when it may have run."""
        from flyteidl.admin import agent_pb2

        category = TaskCategory.of(template)
        header = agent_pb2.CreateRequestHeader(template=template, output_prefix=output_prefix,
                                               task_execution_metadata=task_execution_metadata)
        if await self._protocol() != "v1":
            raise NotSupportedError(f"the service at {self.target} speaks flyteidl2, which has no sync service; "
                                    f"cannot run the sync task type {category.name!r}")
        call = self._sync_callable()
        await self._connected("execute_sync")  # until here nothing was sent: failing is safe
        requests = [agent_pb2.ExecuteTaskSyncRequest(header=header), agent_pb2.ExecuteTaskSyncRequest(inputs=inputs)]
        try:
            responses = [r async for r in call(iter(requests), timeout=self.timeout, metadata=self._metadata)]
        except grpc.aio.AioRpcError as e:
            if e.code() in _MAYBE_RECEIVED:
                detail = f"{e.code().name}: {self._mask(e.details() or '')}"
                run_id = _run_id(agent_pb2.CreateTaskRequest(task_execution_metadata=task_execution_metadata))
                raise CreateOutcomeUnknownError(run_id, category.name, detail) from None
            raise await self._error(e, "execute_sync", category) from None
        return _sync_resource(responses, category)

    def _sync_callable(self) -> Any:
        """The ExecuteTaskSync multi-callable (bidirectional stream) on the running loop's channel."""
        from flyteidl.admin import agent_pb2

        channel = self._channel_here()
        call = self._calls.get(("v1", "ExecuteTaskSync"))
        if call is None:
            call = self._calls[("v1", "ExecuteTaskSync")] = channel.stream_stream(
                _SYNC_PATH, request_serializer=agent_pb2.ExecuteTaskSyncRequest.SerializeToString,
                response_deserializer=agent_pb2.ExecuteTaskSyncResponse.FromString,
            )
        return call

    async def get(self, category: TaskCategory, resource_meta: bytes, output_prefix: str = "") -> Resource:
        """GetTask: the run's current phase, message, links and outputs."""
        from flyteidl.admin import agent_pb2

        from ..connector import Resource

        request = agent_pb2.GetTaskRequest(
            task_type=category.name, task_category=_category_pb(category), resource_meta=resource_meta,
            output_prefix=output_prefix,
        )
        pb = (await self._unary("GetTask", request, "get", category)).resource
        resource = Resource.from_flyte_idl(pb)
        if not resource.message and pb.HasField("agent_error"):
            resource.message = _agent_error_text(pb.agent_error)
        return resource

    async def delete(self, category: TaskCategory, resource_meta: bytes) -> None:
        """DeleteTask (connectors make it idempotent, so it may be retried)."""
        from flyteidl.admin import agent_pb2

        request = agent_pb2.DeleteTaskRequest(
            task_type=category.name, task_category=_category_pb(category), resource_meta=resource_meta
        )
        await self._unary("DeleteTask", request, "delete", category)

    async def get_metrics(
        self,
        category: TaskCategory,
        resource_meta: bytes,
        queries: Sequence[str] = (),
        start: datetime | None = None,
        end: datetime | None = None,
        step: timedelta | None = None,
    ) -> agent_pb2.GetTaskMetricsResponse:
        """GetTaskMetrics for the run."""
        from flyteidl.admin import agent_pb2

        request = agent_pb2.GetTaskMetricsRequest(
            task_type=category.name, task_category=_category_pb(category), resource_meta=resource_meta,
            queries=list(queries),
        )
        if start is not None:
            request.start_time.FromDatetime(start)
        if end is not None:
            request.end_time.FromDatetime(end)
        if step is not None:
            request.step.FromTimedelta(step)
        response: agent_pb2.GetTaskMetricsResponse = await self._unary(
            "GetTaskMetrics", request, "get_metrics", category
        )
        return response

    async def get_logs(
        self, category: TaskCategory, resource_meta: bytes, lines: int = 0, token: str = ""
    ) -> AsyncIterator[agent_pb2.GetTaskLogsResponse]:
        """GetTaskLogs as a stream; retried only before its first message (a half-read stream cannot resume)."""
        from flyteidl.admin import agent_pb2

        request = agent_pb2.GetTaskLogsRequest(
            task_type=category.name, task_category=_category_pb(category), resource_meta=resource_meta,
            lines=lines, token=token,
        )
        call = self._callable("GetTaskLogs", await self._protocol())
        streams: list[Any] = []

        async def first() -> Any:
            streams.append(call(request, timeout=self.logs_timeout, metadata=self._metadata))
            return await streams[-1].read()

        try:
            response = await self._retrying(first)
            while response is not grpc.aio.EOF:  # a stream with zero messages is EOF at once
                yield response
                response = await streams[-1].read()
        except grpc.aio.AioRpcError as e:
            raise await self._error(e, "get_logs", category) from None
        finally:
            if streams:
                streams[-1].cancel()  # no-op when finished; stops the stream if the consumer broke off

    async def aclose(self) -> None:
        """Close the channel (when called on the loop that made it)."""
        channel, self._channel, self._calls = self._channel, None, {}
        if channel is not None and self._loop is asyncio.get_running_loop():
            await channel.close()

    # -- plumbing --------------------------------------------------------------------------------

    def _channel_here(self) -> grpc.aio.Channel:
        """The channel of the running loop (grpc.aio channels are bound to one loop)."""
        loop = asyncio.get_running_loop()
        if self._channel is None or self._loop is not loop:
            self._channel, self._loop, self._calls = self._make_channel(), loop, {}
        return self._channel

    def _callable(self, method: str, protocol: str) -> Any:
        """A multi-callable for ``method`` on ``protocol``'s path, with v2's Connection appended where it goes."""
        channel = self._channel_here()
        call = self._calls.get((protocol, method))
        if call is None:
            response_type = message_types(method)[1]
            _, _, _, streaming, carries = METHODS[method]
            extra = connection_bytes(self._secrets, self._configs) if protocol == "v2" and carries else b""
            make = channel.unary_stream if streaming else channel.unary_unary
            call = self._calls[(protocol, method)] = make(
                method_path(protocol, method), request_serializer=lambda r: r.SerializeToString() + extra,
                response_deserializer=response_type.FromString,
            )
        return call

    def _make_channel(self) -> grpc.aio.Channel:
        if not self.tls:
            return grpc.aio.insecure_channel(self.address, options=self._options)
        credentials = grpc.ssl_channel_credentials(root_certificates=self._root_certificates)
        return grpc.aio.secure_channel(self.address, credentials, options=self._options)

    async def _protocol(self) -> str:
        if self.protocol is None:
            await self._list()
        return self.protocol or "v1"  # _list settled it (or raised)

    async def _list(self) -> agent_pb2.ListAgentsResponse:
        """ListAgents (v1) or ListConnectors (v2); under 'auto' the first that is implemented decides."""
        from flyteidl.admin import agent_pb2

        request = agent_pb2.ListAgentsRequest()
        for protocol in (self.protocol,) if self.protocol else ("v1", "v2"):
            call = self._callable("ListAgents", protocol)
            try:
                response: agent_pb2.ListAgentsResponse = await self._retrying(
                    lambda: call(request, timeout=self.timeout, metadata=self._metadata)  # noqa: B023
                )
            except grpc.aio.AioRpcError as e:
                if e.code() is _CODE.UNIMPLEMENTED and protocol == "v1" and self.protocol is None:
                    continue  # not a flyteidl v1 service: ask in flyteidl2
                raise await self._error(e, "list_connectors", None) from None
            self._settle(protocol)
            self._sync = _sync_map(response)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _settle(self, protocol: str) -> None:
        if self.protocol is None and protocol == "v1" and (self._secrets or self._configs):
            warnings.warn(f"{self.target} speaks flyteidl v1, which has no Connection: secrets/configs are not sent",
                          stacklevel=2)
        self.protocol = protocol

    async def _connected(self, what: str) -> None:
        """Wait up to the timeout for a live connection; ServiceUnavailableError (nothing sent) if none comes."""
        try:
            await asyncio.wait_for(self._channel_here().channel_ready(), self.timeout)
        except asyncio.TimeoutError:
            raise ServiceUnavailableError(
                f"connector service at {self.target} is unavailable: no connection within {self.timeout:g} s; "
                f"{what}() was not sent"
            ) from None

    def _delay(self, attempt: int) -> float:
        return float(min(self.backoff * 2**attempt, self.max_backoff))

    async def _unary(self, method: str, request: Any, what: str, category: TaskCategory | None = None) -> Any:
        """A call that is safe to repeat: deadline, UNAVAILABLE retried, failures mapped to our errors."""
        call = self._callable(method, await self._protocol())
        try:
            return await self._retrying(lambda: call(request, timeout=self.timeout, metadata=self._metadata))
        except grpc.aio.AioRpcError as e:
            raise await self._error(e, what, category) from None

    async def _retrying(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """``attempt()``, repeated with capped exponential backoff while the service is UNAVAILABLE."""
        for n in range(self.retries):
            try:
                return await attempt()
            except grpc.aio.AioRpcError as e:
                if e.code() is not _CODE.UNAVAILABLE:
                    raise
            await asyncio.sleep(self._delay(n))
        return await attempt()

    async def _error(self, e: grpc.aio.AioRpcError, what: str, category: TaskCategory | None) -> Exception:
        code, details = e.code(), self._mask(e.details() or "")
        task_type = category.name if category else ""
        error = await self._mapped(code, details, what, category)
        if error is None:
            error = ConnectorCallError(what, task_type, None, f"{code.name}: {details}")
        error.grpc_code = code.name  # type: ignore[attr-defined]
        return error

    async def _mapped(
        self, code: grpc.StatusCode, details: str, what: str, category: TaskCategory | None
    ) -> Exception | None:
        """Our error for a status code: the class from the one table (``_status``), the message from context."""
        task_type = category.name if category else ""
        cls = error_class(code.name)
        optional = {"get_metrics": "metrics", "get_logs": "logs"}.get(what)
        # flytekit's and Flyte 2's services let NotImplementedError escape, which gRPC reports as UNKNOWN.
        if optional and (cls is NotSupportedError or "NotImplementedError" in details):
            return NotSupportedError(f"this connector has no {optional}" + (f" ({details})" if details else ""))
        if cls is ServiceUnavailableError:
            return ServiceUnavailableError(f"connector service at {self.target} is unavailable: {details}")
        if cls is CallTimeoutError:
            return await self._timed_out(what, task_type, details)
        if cls is UnknownTaskTypeError:
            return UnknownTaskTypeError(category.name, category.version, await self._offered()) if category else None
        if cls is InputError:
            return (InputError if what in ("create", "execute_sync") else MetadataError)(details)
        if cls is NotSupportedError:
            return NotSupportedError(f"the service at {self.target} does not implement {what}(): {details}")
        if cls is ConnectorCallError:
            return ConnectorCallError(what, task_type, None, details)
        if cls is AuthError:
            return AuthError(f"connector service at {self.target} refused {what}(): {code.name}: {details} "
                             f"(token= or ${_TOKEN_ENV} sets the bearer token)")
        if cls is LimitExceededError:
            return LimitExceededError(f"connector service at {self.target} refused {what}(): {details}")
        return None

    async def _timed_out(self, what: str, task_type: str, details: str) -> Exception:
        """A hung connector (the service still answers) is a CallTimeoutError; a service gone quiet is unavailable."""
        limit = self.logs_timeout if what == "get_logs" else self.timeout
        if task_type and await self._answers():
            return CallTimeoutError(what, task_type, limit)
        return ServiceUnavailableError(
            f"connector service at {self.target} did not answer {what}() within {limit:g} s: {details}"
        )

    async def _answers(self) -> bool:
        """Whether the service answers at all: a health check, where any reply but silence counts."""
        from grpc_health.v1 import health_pb2

        call = self._channel_here().unary_unary(
            "/grpc.health.v1.Health/Check", request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            await call(health_pb2.HealthCheckRequest(), timeout=min(2.0, self.timeout), metadata=self._metadata)
        except grpc.aio.AioRpcError as e:
            return e.code() not in (_CODE.UNAVAILABLE, _CODE.DEADLINE_EXCEEDED)
        return True

    def _mask(self, text: str) -> str:
        """``text`` (e.g. a service's error detail echoing a request) with secrets and metadata values masked."""
        values = [v.decode(errors="replace") if isinstance(v, bytes) else v for _, v in self._metadata]
        credentials = [*values, *(v.split(" ", 1)[-1] for v in values)]  # "Bearer <token>" and the bare token
        return mask_text(text, sorted({*self._secrets.values(), *credentials}, key=len, reverse=True))

    async def _offered(self) -> list[str]:
        """What the service offers, for the 'no connector for ...' message (best effort)."""
        try:
            return sorted({f"{c.task_type} (v{c.version})" for c in await self.connectors()})
        except Exception:
            return ["(could not list the service's connectors)"]

    def __repr__(self) -> str:
        # Call metadata and secrets are credentials: show keys only, never values.
        def keys(label: str, pairs: Sequence[tuple[str, Any]]) -> str:
            return f" {label}={{{', '.join(f'{k!r}: ***' for k, _ in pairs)}}}" if pairs else ""

        return (f"<GrpcTransport {self.target} protocol={self.protocol or 'auto'} timeout={self.timeout:g}s "
                f"retries={self.retries}{keys('metadata', self._metadata)}"
                f"{keys('secrets', list(self._secrets.items()))}{keys('configs', list(self._configs.items()))}>")


#: flyteidl v1's sync service (flyteidl2 has none).
_SYNC_PATH = "/flyteidl.service.SyncAgentService/ExecuteTaskSync"
#: Codes after which a sent CreateTask may have been received and acted on.
_MAYBE_RECEIVED = (_CODE.UNAVAILABLE, _CODE.DEADLINE_EXCEEDED, _CODE.CANCELLED)


def _run_id(request: agent_pb2.CreateTaskRequest) -> str:
    """The run id a session puts in the request: the execution name propeller would set."""
    return str(request.task_execution_metadata.task_execution_id.node_execution_id.execution_id.name)


def _sync_map(response: agent_pb2.ListAgentsResponse) -> dict[TaskCategory, bool]:
    """Category -> is_sync, from a ListAgents answer."""
    return {
        TaskCategory(c.name, c.version): agent.is_sync
        for agent in response.agents
        for c in (agent.supported_task_categories or [TaskCategory(t) for t in agent.supported_task_types])
    }


def _sync_resource(responses: Sequence[agent_pb2.ExecuteTaskSyncResponse], category: TaskCategory) -> Resource:
    """The final Resource of an ExecuteTaskSync answer: the header's, with outputs sent after it merged in."""
    from flyteidl.admin import agent_pb2

    from ..connector import Resource

    if not responses or responses[0].WhichOneof("res") != "header":
        raise ConnectorCallError("execute_sync", category.name, None,
                                 "the service answered without a header (expected the final Resource first)")
    pb = agent_pb2.Resource()
    pb.CopyFrom(responses[0].header.resource)
    for extra in responses[1:]:
        if extra.WhichOneof("res") == "outputs":
            pb.outputs.literals.MergeFrom(extra.outputs.literals)
    resource = Resource.from_flyte_idl(pb)
    if not resource.message and pb.HasField("agent_error"):
        resource.message = _agent_error_text(pb.agent_error)
    return resource


def _agent_error_text(error: Any) -> str:
    """A message from a v1 AgentError (1.16 has only code/kind/origin; other versions add a message)."""
    from flyteidl.admin import agent_pb2

    message = getattr(error, "message", "") or error.code or "agent error"
    return f"{message} ({agent_pb2.AgentError.Kind.Name(error.kind)})"


def _str_map(values: Mapping[str, str] | None, field: str) -> dict[str, str]:
    if values is None:
        return {}
    if not isinstance(values, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
        raise TypeError(f"{field} must be a mapping of str to str")
    return dict(values)


def _authorization(token: str | None, metadata: tuple[tuple[str, str | bytes], ...]) -> tuple[tuple[str, str], ...]:
    """``authorization: Bearer <token>`` from ``token`` or ``$CONNECTOR_NB_TOKEN`` (explicit metadata wins)."""
    explicit = any(key == "authorization" for key, _ in metadata)
    if token is None:
        token = None if explicit else os.environ.get(_TOKEN_ENV) or None
        if token is None:
            return ()
    elif explicit:
        raise ValueError("give either token= or an 'authorization' metadata entry, not both")
    if not isinstance(token, str):
        raise TypeError(f"token must be a str, got {type(token).__name__}")
    if not token.strip() or any(c in token for c in "\r\n\0"):
        raise ValueError(f"token must be a non-empty single-line string (from token= or ${_TOKEN_ENV})")
    return (("authorization", f"Bearer {token.strip()}"),)


def _category_pb(category: TaskCategory) -> agent_pb2.TaskCategory:
    from flyteidl.admin import agent_pb2

    return agent_pb2.TaskCategory(name=category.name, version=category.version)


__all__ = ["GrpcTransport", "parse_target"]
