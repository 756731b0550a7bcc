"""``MockTransport``: a transport whose every call goes to one handler function (httpx's MockTransport idea).

For users' tests of code that drives a session: no connector, no service, just answers::

    def handler(request: Request) -> Any:
        if request.method == "create":
            return b'{"job": 1}'
        if request.method == "get":
            return Resource(phase="SUCCEEDED", outputs={"n": 3})
        return None

    session = Session(MockTransport(handler))
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Sequence

from ..connector import Resource, ResourceMeta
from ..errors import ConnectorCallError
from .base import ConnectorInfo, TaskCategory, Transport

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from flyteidl.admin import agent_pb2
    from flyteidl.core import literals_pb2, tasks_pb2


@dataclass(frozen=True)
class Request:
    """One transport call as the handler sees it: ``method`` and whatever that call carries."""

    method: str
    category: TaskCategory | None = None
    resource_meta: bytes = b""
    template: Any = None
    inputs: Any = None
    output_prefix: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Request], Any]


class MockTransport(Transport):
    """Answers every call with ``handler(request)`` (a plain function or a coroutine function).

    Returns by method: ``connectors`` -> list of ConnectorInfo; ``create`` -> bytes or a ResourceMeta;
    ``get`` -> Resource; ``delete`` -> None; ``get_metrics`` -> GetTaskMetricsResponse; ``get_logs`` -> a
    list of lines, or of GetTaskLogsResponse. A raised exception is what the session sees.
    """

    target = "mock"

    def __init__(self, handler: Handler) -> None:
        """Send every call to ``handler``; ``calls`` keeps each request in order."""
        self.handler = handler
        self.calls: list[Request] = []

    async def _ask(self, request: Request) -> Any:
        self.calls.append(request)
        answer = self.handler(request)
        return await answer if inspect.isawaitable(answer) else answer

    async def connectors(self) -> list[ConnectorInfo]:
        """The handler's answer to ``connectors``, or nothing."""
        return list(await self._ask(Request("connectors")) or [])

    async def create(
        self,
        template: tasks_pb2.TaskTemplate,
        inputs: literals_pb2.LiteralMap,
        output_prefix: str,
        task_execution_metadata: agent_pb2.TaskExecutionMetadata | None = None,
    ) -> bytes:
        """The handler's resource meta, as bytes."""
        category = TaskCategory.of(template)
        meta = await self._ask(Request("create", category, b"", template, inputs, output_prefix,
                                       {"task_execution_metadata": task_execution_metadata}))
        if isinstance(meta, ResourceMeta):
            return meta.encode()
        if not isinstance(meta, bytes):
            raise ConnectorCallError("create", category.name, None, f"mock returned {type(meta).__name__}; "
                                     "expected bytes or a ResourceMeta")
        return meta

    async def get(self, category: TaskCategory, resource_meta: bytes, output_prefix: str = "") -> Resource:
        """The handler's Resource."""
        resource = await self._ask(Request("get", category, resource_meta, output_prefix=output_prefix))
        if not isinstance(resource, Resource):
            raise ConnectorCallError("get", category.name, None, f"mock returned {type(resource).__name__}; "
                                     "expected a Resource")
        return resource

    async def delete(self, category: TaskCategory, resource_meta: bytes) -> None:
        """Tell the handler."""
        await self._ask(Request("delete", category, resource_meta))

    async def get_metrics(
        self,
        category: TaskCategory,
        resource_meta: bytes,
        queries: Sequence[str] = (),
        start: datetime | None = None,
        end: datetime | None = None,
        step: timedelta | None = None,
    ) -> agent_pb2.GetTaskMetricsResponse:
        """The handler's metrics response."""
        extra = {"queries": tuple(queries), "start": start, "end": end, "step": step}
        return await self._ask(Request("get_metrics", category, resource_meta, extra=extra))

    async def get_logs(
        self, category: TaskCategory, resource_meta: bytes, lines: int = 0, token: str = ""
    ) -> AsyncIterator[agent_pb2.GetTaskLogsResponse]:
        """The handler's lines, as one log response (or its responses as they are)."""
        from flyteidl.admin import agent_pb2

        answer = await self._ask(Request("get_logs", category, resource_meta, extra={"lines": lines, "token": token}))
        items = list(answer or [])
        if items and all(isinstance(i, str) for i in items):
            yield agent_pb2.GetTaskLogsResponse(body=agent_pb2.GetTaskLogsResponseBody(results=items))
            return
        for item in items:
            yield item


AsyncHandler = Callable[[Request], Awaitable[Any]]

__all__ = ["AsyncHandler", "Handler", "MockTransport", "Request"]
