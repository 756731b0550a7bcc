"""``register(conn, thread_affinity=True)`` for our own connectors: every sync method on one dedicated thread.

For connectors that keep thread-local state between calls (Airflow's ``ExecutorSafeguard`` is the known case).
Async methods are awaited as usual; only the ``def`` ones move to the pinned thread.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, AsyncIterator

from ..connector import AsyncConnector, Resource, ResourceMeta

if TYPE_CHECKING:
    from flyteidl.admin import agent_pb2
    from flyteidl.core import tasks_pb2


class PinnedConnector(AsyncConnector[Any]):
    """Wraps one of our connectors (``wrapped``): same task type, metadata and interface, one thread for sync calls."""

    def __init__(self, wrapped: AsyncConnector[Any]) -> None:
        """Pin ``wrapped``'s sync methods to a thread of their own."""
        super().__init__(task_type_name=wrapped.task_type_name, metadata_type=wrapped.metadata_type,
                         task_type_version=wrapped.task_type_version, name=wrapped.name)
        self.wrapped = wrapped
        # The interface is the wrapped connector's (templates, defaults and forms are built from it).
        self.input_types = wrapped.input_types  # type: ignore[misc]
        self.output_types = wrapped.output_types  # type: ignore[misc]
        self.input_defaults = wrapped.input_defaults  # type: ignore[misc]
        self.secrets = wrapped.secrets  # type: ignore[misc]
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"cnb-{wrapped.task_type_name}")

    thread_affinity = True

    async def create(self, task_template: tasks_pb2.TaskTemplate, output_prefix: str,
                     inputs: dict[str, Any] | None = None, **kwargs: Any) -> ResourceMeta:
        """The wrapped ``create``."""
        meta: ResourceMeta = await self._call("create", task_template=task_template, output_prefix=output_prefix,
                                              inputs=inputs, **kwargs)
        return meta

    async def get(self, resource_meta: Any, **kwargs: Any) -> Resource:
        """The wrapped ``get``."""
        resource: Resource = await self._call("get", resource_meta=resource_meta, **kwargs)
        return resource

    async def delete(self, resource_meta: Any, **kwargs: Any) -> None:
        """The wrapped ``delete``."""
        await self._call("delete", resource_meta=resource_meta, **kwargs)

    async def get_metrics(self, resource_meta: Any, **kwargs: Any) -> agent_pb2.GetTaskMetricsResponse:
        """The wrapped ``get_metrics``."""
        metrics: agent_pb2.GetTaskMetricsResponse = await self._call("get_metrics", resource_meta=resource_meta,
                                                                     **kwargs)
        return metrics

    async def get_logs(self, resource_meta: Any, **kwargs: Any) -> AsyncIterator[agent_pb2.GetTaskLogsResponse]:
        """The wrapped ``get_logs``: its async generator's responses, or its one response."""
        fn = self.wrapped.get_logs
        if inspect.isasyncgenfunction(fn):
            async for response in fn(**_accepted(fn, {"resource_meta": resource_meta, **kwargs})):
                yield response
            return
        yield await self._call("get_logs", resource_meta=resource_meta, **kwargs)

    def supports(self, method: str) -> bool:
        """What the wrapped connector implements."""
        return self.wrapped.supports(method)

    def task_template(self, custom: Any = None, name: str | None = None) -> tasks_pb2.TaskTemplate:
        """The wrapped connector's template."""
        return self.wrapped.task_template(custom, name)

    async def _call(self, method: str, **kwargs: Any) -> Any:
        fn = getattr(self.wrapped, method)
        kwargs = _accepted(fn, kwargs)  # the wrapped method may declare fewer keywords than we receive
        if inspect.iscoroutinefunction(fn):
            return await fn(**kwargs)
        result = await asyncio.get_running_loop().run_in_executor(self._thread, functools.partial(fn, **kwargs))
        return await result if inspect.isawaitable(result) else result

    def __repr__(self) -> str:
        return f"<PinnedConnector (one thread) of {self.wrapped!r}>"


def _accepted(method: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``method`` declares (all of them if it takes ``**kwargs``), as LocalTransport does.

    Not imported from transports.local: that would close an import cycle (local -> registry -> here).
    """
    params = inspect.signature(method).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return kwargs
    names = {p.name for p in params}
    return {k: v for k, v in kwargs.items() if k in names}
