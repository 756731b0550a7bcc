"""``RecordingTransport``: wraps any transport and writes every connector call to a recording file.

The file is the versioned JSON-lines format of :mod:`connector_nb.recording` (never pickle); secrets are
masked before a line is written. ``ReplayConnector`` plays a recording back.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Sequence

from ..recording import RecordingWriter, job_text, masked_create_request, message_dict, resource_dict
from .base import ConnectorInfo, TaskCategory, Transport

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from flyteidl.admin import agent_pb2
    from flyteidl.core import literals_pb2, tasks_pb2

    from ..connector import Resource


class RecordingTransport(Transport):
    """Passes every call to ``inner`` and records method, request, response (or error) and timing to ``path``."""

    def __init__(self, inner: Transport, path: str) -> None:
        """Record ``inner``'s calls to ``path`` (appended when it is already a recording)."""
        self.inner = inner
        self.target = inner.target
        self.registry = inner.registry
        self.writer = RecordingWriter(path, target=inner.target)
        self._templates: dict[TaskCategory, tasks_pb2.TaskTemplate] = {}

    async def _record(self, method: str, category: TaskCategory, call: Awaitable[Any], request: dict[str, Any],
                      job: bytes | None = None, respond: Any = None) -> Any:
        start = time.monotonic()
        try:
            result = await call
        except Exception as e:
            self.writer.write(method, category, start, request, job=job, error=e)
            raise
        response = respond(result) if respond is not None else None
        self.writer.write(method, category, start, request, job=job if job is not None else result,
                          response=response, category_template=self._templates.get(category))
        return result

    async def connectors(self) -> list[ConnectorInfo]:
        """The inner transport's connectors (not recorded)."""
        return await self.inner.connectors()

    async def task_template(
        self, category: TaskCategory, custom: dict[str, Any] | None = None
    ) -> tasks_pb2.TaskTemplate | None:
        """The inner transport's template."""
        return await self.inner.task_template(category, custom)

    def input_defaults(self, category: TaskCategory) -> dict[str, Any]:
        """The inner transport's input defaults."""
        return self.inner.input_defaults(category)

    async def create(
        self,
        template: tasks_pb2.TaskTemplate,
        inputs: literals_pb2.LiteralMap,
        output_prefix: str,
        task_execution_metadata: agent_pb2.TaskExecutionMetadata | None = None,
    ) -> bytes:
        """Create, recording the template and inputs (the output prefix is a local path, so it is left out)."""
        category = TaskCategory.of(template)
        self._templates[category] = template
        request = masked_create_request(template, inputs)
        meta: bytes = await self._record("create", category, self.inner.create(
            template, inputs, output_prefix, task_execution_metadata), request, respond=lambda m: {"job": job_text(m)})
        return meta

    async def is_sync(self, category: TaskCategory) -> bool:
        """The inner transport's answer (a sync connector is run with ``execute_sync``)."""
        return await self.inner.is_sync(category)

    async def execute_sync(
        self,
        template: tasks_pb2.TaskTemplate,
        inputs: literals_pb2.LiteralMap,
        output_prefix: str,
        task_execution_metadata: agent_pb2.TaskExecutionMetadata | None = None,
    ) -> Resource:
        """A sync connector's whole job, recorded as one call (request as for create, the final Resource)."""
        category = TaskCategory.of(template)
        self._templates[category] = template
        resource: Resource = await self._record(
            "execute_sync", category, self.inner.execute_sync(template, inputs, output_prefix, task_execution_metadata),
            masked_create_request(template, inputs), job=b"", respond=lambda r: resource_dict(r, template))
        return resource

    async def get(self, category: TaskCategory, resource_meta: bytes, output_prefix: str = "") -> Resource:
        """Get, recording the resource as flyteidl's Resource message (outputs as literals)."""
        template = self._templates.get(category)
        resource: Resource = await self._record(
            "get", category, self.inner.get(category, resource_meta, output_prefix), {}, job=resource_meta,
            respond=lambda r: resource_dict(r, template))
        return resource

    async def delete(self, category: TaskCategory, resource_meta: bytes) -> None:
        """Delete, recorded."""
        await self._record("delete", category, self.inner.delete(category, resource_meta), {}, job=resource_meta)

    async def get_metrics(
        self,
        category: TaskCategory,
        resource_meta: bytes,
        queries: Sequence[str] = (),
        start: datetime | None = None,
        end: datetime | None = None,
        step: timedelta | None = None,
    ) -> agent_pb2.GetTaskMetricsResponse:
        """Metrics, recorded with the queries asked."""
        response: agent_pb2.GetTaskMetricsResponse = await self._record(
            "get_metrics", category, self.inner.get_metrics(category, resource_meta, queries, start, end, step),
            {"queries": list(queries)}, job=resource_meta, respond=message_dict)
        return response

    async def get_logs(
        self, category: TaskCategory, resource_meta: bytes, lines: int = 0, token: str = ""
    ) -> AsyncIterator[agent_pb2.GetTaskLogsResponse]:
        """Logs, recorded as the list of streamed responses of one call."""
        pages: list[Any] = []

        async def collect() -> list[Any]:
            async for response in self.inner.get_logs(category, resource_meta, lines, token):
                pages.append(response)
            return pages

        await self._record("get_logs", category, collect(), {"lines": lines, "token": token}, job=resource_meta,
                           respond=lambda got: {"responses": [message_dict(p) for p in got]})
        for response in pages:
            yield response

    async def aclose(self) -> None:
        """Close the file and the inner transport."""
        self.writer.close()
        await self.inner.aclose()


__all__ = ["RecordingTransport"]
