"""gRPC transport: talks to a Flyte connector service (ours or flytekit's ``pyflyte serve connector``).

Requests are filled as Flyte propeller fills them (``task_category`` and the deprecated ``task_type``),
so any connector service that works with Flyte works here. The channel is created lazily on the loop
that first uses it: grpc.aio channels are bound to one event loop.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping, Sequence

# grpc core otherwise prints INFO lines ("Got goaway ...") into the notebook whenever a service restarts.
# Read when grpc is first imported; a value the user set wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
import grpc.aio

from .._tls import read_pem
from ..errors import (
    ConnectorCallError,
    ConnectorNbError,
    InputError,
    MetadataError,
    NotSupportedError,
    ServiceUnavailableError,
    UnknownTaskTypeError,
)
from .base import ConnectorInfo, TaskCategory, Transport

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from flyteidl.admin import agent_pb2
    from flyteidl.core import literals_pb2, tasks_pb2

    from ..connector import Resource

_TARGET = re.compile(r"^(?:(?P<scheme>grpcs?)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/\[\]\s]+)(?::(?P<port>\d{1,5}))?/?$")
_EXPECTED = "expected 'grpc://host:port', 'grpcs://host:port' or 'host:port'"
_CODE = grpc.StatusCode
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


def _metadata(metadata: Sequence[tuple[str, str | bytes]] | Mapping[str, str | bytes] | None) -> tuple:
    items = list(metadata.items()) if isinstance(metadata, Mapping) else list(metadata or ())
    pairs = []
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise TypeError("metadata must be a mapping or a sequence of (key, value) pairs with str keys")
        # gRPC rejects upper-case keys at call time with an obscure error: normalise them here.
        pairs.append((item[0].lower(), item[1]))
    return tuple(pairs)


class GrpcTransport(Transport):
    """A connector service reached over gRPC (``AsyncAgentService`` + ``AgentMetadataService``)."""

    def __init__(
        self,
        target: str,
        *,
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
        self._metadata = _metadata(metadata)
        self.timeout, self.logs_timeout = float(timeout), float(logs_timeout)
        self.retries, self.backoff, self.max_backoff = int(retries), float(backoff), float(max_backoff)
        self._options = _CHANNEL_OPTIONS + tuple(channel_options) + (
            (("grpc.ssl_target_name_override", server_hostname),) if server_hostname else ()
        )
        self._channel: grpc.aio.Channel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stubs: tuple[Any, Any] | None = None

    # -- Transport -------------------------------------------------------------------------------

    async def connectors(self) -> list[ConnectorInfo]:
        from flyteidl.admin import agent_pb2

        response = await self._unary("ListAgents", agent_pb2.ListAgentsRequest(), "list_connectors")
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
        from flyteidl.admin import agent_pb2

        request = agent_pb2.CreateTaskRequest(
            template=template, inputs=inputs, output_prefix=output_prefix,
            task_execution_metadata=task_execution_metadata,
        )
        category = TaskCategory(template.type, template.task_type_version)
        return (await self._unary("CreateTask", request, "create", category)).resource_meta

    async def get(self, category: TaskCategory, resource_meta: bytes, output_prefix: str = "") -> Resource:
        from flyteidl.admin import agent_pb2

        from ..connector import Resource

        request = agent_pb2.GetTaskRequest(
            task_type=category.name, task_category=_category_pb(category), resource_meta=resource_meta,
            output_prefix=output_prefix,
        )
        pb = (await self._unary("GetTask", request, "get", category)).resource
        resource = Resource.from_flyte_idl(pb)
        if not resource.message and pb.HasField("agent_error"):
            resource.message = pb.agent_error.message
        return resource

    async def delete(self, category: TaskCategory, resource_meta: bytes) -> None:
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
        return await self._unary("GetTaskMetrics", request, "get_metrics", category)

    async def get_logs(
        self, category: TaskCategory, resource_meta: bytes, lines: int = 0, token: str = ""
    ) -> AsyncIterator[agent_pb2.GetTaskLogsResponse]:
        from flyteidl.admin import agent_pb2

        request = agent_pb2.GetTaskLogsRequest(
            task_type=category.name, task_category=_category_pb(category), resource_meta=resource_meta,
            lines=lines, token=token,
        )
        attempt = 0
        while True:
            call = self._stub("GetTaskLogs")(request, timeout=self.logs_timeout, metadata=self._metadata)
            received = False
            try:
                async for response in call:  # a stream with zero messages simply ends here
                    received = True
                    yield response
                return
            except grpc.aio.AioRpcError as e:
                # Only retry before anything was yielded: a half-read stream cannot be resumed.
                if e.code() is _CODE.UNAVAILABLE and not received and attempt < self.retries:
                    await asyncio.sleep(self._delay(attempt))
                    attempt += 1
                    continue
                raise await self._error(e, "get_logs", category) from None
            finally:
                call.cancel()  # no-op when finished; stops the stream if the consumer broke off

    async def aclose(self) -> None:
        channel, self._channel, self._stubs = self._channel, None, None
        if channel is not None and self._loop is asyncio.get_running_loop():
            await channel.close()

    # -- plumbing --------------------------------------------------------------------------------

    def _stub(self, method: str) -> Any:
        loop = asyncio.get_running_loop()
        if self._stubs is None or self._loop is not loop:
            from flyteidl.service import agent_pb2_grpc

            self._channel = self._make_channel()
            self._loop = loop
            self._stubs = (
                agent_pb2_grpc.AsyncAgentServiceStub(self._channel),
                agent_pb2_grpc.AgentMetadataServiceStub(self._channel),
            )
        agent, metadata = self._stubs
        return getattr(metadata if method in ("ListAgents", "GetAgent") else agent, method)

    def _make_channel(self) -> grpc.aio.Channel:
        if not self.tls:
            return grpc.aio.insecure_channel(self.address, options=self._options)
        credentials = grpc.ssl_channel_credentials(root_certificates=self._root_certificates)
        return grpc.aio.secure_channel(self.address, credentials, options=self._options)

    def _delay(self, attempt: int) -> float:
        return min(self.backoff * 2**attempt, self.max_backoff)

    async def _unary(self, method: str, request: Any, what: str, category: TaskCategory | None = None) -> Any:
        """Call with a deadline; retry UNAVAILABLE with exponential backoff; map failures to our errors."""
        attempt = 0
        while True:
            try:
                return await self._stub(method)(request, timeout=self.timeout, metadata=self._metadata)
            except grpc.aio.AioRpcError as e:
                if e.code() is _CODE.UNAVAILABLE and attempt < self.retries:
                    await asyncio.sleep(self._delay(attempt))
                    attempt += 1
                    continue
                raise await self._error(e, what, category) from None

    async def _error(self, e: grpc.aio.AioRpcError, what: str, category: TaskCategory | None) -> Exception:
        code, details = e.code(), e.details() or ""
        task_type = category.name if category else ""
        error = await self._mapped(code, details, what, category)
        if error is None:
            error = ConnectorCallError(what, task_type, None, f"{code.name}: {details}")
        error.grpc_code = code.name  # type: ignore[attr-defined]
        return error

    async def _mapped(
        self, code: grpc.StatusCode, details: str, what: str, category: TaskCategory | None
    ) -> Exception | None:
        task_type = category.name if category else ""
        optional = {"get_metrics": "metrics", "get_logs": "logs"}.get(what)
        if code is _CODE.UNAVAILABLE:
            return ServiceUnavailableError(f"connector service at {self.target} is unavailable: {details}")
        if code is _CODE.DEADLINE_EXCEEDED:
            limit = self.logs_timeout if what == "get_logs" else self.timeout
            return ServiceUnavailableError(
                f"connector service at {self.target} did not answer {what}() within {limit:g} s: {details}"
            )
        if code is _CODE.NOT_FOUND and category is not None:
            return UnknownTaskTypeError(category.name, category.version, await self._offered())
        if code is _CODE.INVALID_ARGUMENT:
            return (InputError if what == "create" else MetadataError)(details)
        # flytekit's service lets NotImplementedError escape, which gRPC reports as UNKNOWN.
        if optional and (code is _CODE.UNIMPLEMENTED or "NotImplementedError" in details):
            return NotSupportedError(f"this connector has no {optional}" + (f" ({details})" if details else ""))
        if code is _CODE.UNIMPLEMENTED:
            return NotSupportedError(f"the service at {self.target} does not implement {what}(): {details}")
        if code in (_CODE.INTERNAL, _CODE.UNKNOWN):
            return ConnectorCallError(what, task_type, None, details)
        if code in (_CODE.UNAUTHENTICATED, _CODE.PERMISSION_DENIED):
            return ConnectorNbError(f"connector service at {self.target} refused {what}(): {code.name}: {details}")
        return None

    async def _offered(self) -> list[str]:
        """What the service offers, for the 'no connector for ...' message (best effort)."""
        try:
            return sorted({f"{c.task_type} (v{c.version})" for c in await self.connectors()})
        except Exception:
            return ["(could not list the service's connectors)"]

    def __repr__(self) -> str:
        # Call metadata usually carries credentials: show keys only, never values.
        meta = f" metadata={{{', '.join(f'{k!r}: ***' for k, _ in self._metadata)}}}" if self._metadata else ""
        return f"<GrpcTransport {self.target} timeout={self.timeout:g}s retries={self.retries}{meta}>"


def _category_pb(category: TaskCategory) -> agent_pb2.TaskCategory:
    from flyteidl.admin import agent_pb2

    return agent_pb2.TaskCategory(name=category.name, version=category.version)


__all__ = ["GrpcTransport", "parse_target"]
