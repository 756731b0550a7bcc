"""In-process transport: calls connector methods directly, as a connector service would.

``def`` methods run in a worker thread so they never stall the loop; ``async def`` ones are awaited.
Metadata still crosses as bytes and inputs as a LiteralMap, so behaviour matches the gRPC path.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Sequence

from .. import secrets
from .._workers import WorkerPool
from ..connector import AsyncConnector, Resource, ResourceMeta
from ..errors import ConnectorCallError, ConnectorNbError, NotSupportedError
from ..secrets import mask_error
from .base import ConnectorInfo, TaskCategory, Transport

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from flyteidl.admin import agent_pb2
    from flyteidl.core import literals_pb2, tasks_pb2

    from ..registry import ConnectorRegistry


class LocalTransport(Transport):
    """Runs the connectors of a :class:`ConnectorRegistry` in this process."""

    target = "in-process"

    def __init__(self, registry: ConnectorRegistry | None = None, *, max_workers: int = 32) -> None:
        """Run ``registry``'s connectors (default: the default registry), ``max_workers`` sync calls at once."""
        from ..registry import ConnectorRegistry

        self.registry: ConnectorRegistry = registry if registry is not None else ConnectorRegistry.default()
        self._max_workers = max_workers
        self._workers: WorkerPool | None = None
        self._slots: asyncio.Semaphore | None = None

    def connector(self, category: TaskCategory) -> AsyncConnector[Any]:
        """The registered connector for a task category (UnknownTaskTypeError lists the others)."""
        return self.registry.get_connector(category.name, category.version)

    async def connectors(self) -> list[ConnectorInfo]:
        """Every registered connector (a wrapped flytekit SyncConnectorBase is sync)."""
        return [
            ConnectorInfo(c.name, c.task_type_name, int(c.task_type_version), bool(getattr(c, "is_sync", False)))
            for c in self.registry.list_connectors()
        ]

    async def task_template(
        self, category: TaskCategory, custom: dict[str, Any] | None = None
    ) -> tasks_pb2.TaskTemplate:
        """The connector's declared template (its typed interface)."""
        return self.connector(category).task_template(custom)

    def input_defaults(self, category: TaskCategory) -> dict[str, Any]:
        """The connector's declared input defaults."""
        return dict(self.connector(category).input_defaults)

    async def create(
        self,
        template: tasks_pb2.TaskTemplate,
        inputs: literals_pb2.LiteralMap,
        output_prefix: str,
        task_execution_metadata: agent_pb2.TaskExecutionMetadata | None = None,
    ) -> bytes:
        """Call the connector's ``create`` with Python inputs; returns its encoded metadata."""
        connector = self.connector(TaskCategory.of(template))
        meta = await self._start(connector, "create", ResourceMeta, template, inputs, output_prefix,
                                 task_execution_metadata)
        return bytes(meta.encode())

    async def is_sync(self, category: TaskCategory) -> bool:
        """Whether the registered connector is sync (a wrapped flytekit ``SyncConnectorBase``)."""
        return bool(getattr(self.connector(category), "is_sync", False))

    async def execute_sync(
        self,
        template: tasks_pb2.TaskTemplate,
        inputs: literals_pb2.LiteralMap,
        output_prefix: str,
        task_execution_metadata: agent_pb2.TaskExecutionMetadata | None = None,
    ) -> Resource:
        """Call a sync connector's ``do()`` with Python inputs; checks it returned a Resource."""
        category = TaskCategory.of(template)
        if not await self.is_sync(category):
            raise NotSupportedError(f"the {category.name!r} connector is not sync: it has no do(); use create()")
        resource: Resource = await self._start(self.connector(category), "do", Resource, template, inputs,
                                               output_prefix, task_execution_metadata)
        return resource

    async def _start(
        self, connector: AsyncConnector[Any], method: str, returns: type, template: tasks_pb2.TaskTemplate,
        inputs: literals_pb2.LiteralMap, output_prefix: str, metadata: agent_pb2.TaskExecutionMetadata | None,
    ) -> Any:
        """``create`` or ``do`` with the inputs as Python values; checks what it returned is a ``returns``."""
        from ..literals import to_python_dict
        from ..template import interface_types, remember_secrets

        values = to_python_dict(inputs, interface_types(template)[0])
        remember_secrets(template, values)  # served: masked in everything this process sends back
        result = await self._call(connector, method, task_template=template, output_prefix=output_prefix,
                                  inputs=values, task_execution_metadata=metadata)
        if not isinstance(result, returns):
            raise ConnectorCallError(method, connector.task_type_name, None,
                                     f"returned {type(result).__name__}; expected a {returns.__name__}")
        return result

    async def get(self, category: TaskCategory, resource_meta: bytes, output_prefix: str = "") -> Resource:
        """Call ``get`` with the decoded metadata; checks it returned a Resource."""
        connector, meta = self._resolve(category, resource_meta)
        resource = await self._call(connector, "get", resource_meta=meta)
        if not isinstance(resource, Resource):
            raise ConnectorCallError("get", category.name, None,
                                     f"returned {type(resource).__name__}; expected a Resource")
        return resource

    async def delete(self, category: TaskCategory, resource_meta: bytes) -> None:
        """Call ``delete`` with the decoded metadata."""
        connector, meta = self._resolve(category, resource_meta)
        await self._call(connector, "delete", resource_meta=meta)

    async def get_metrics(
        self,
        category: TaskCategory,
        resource_meta: bytes,
        queries: Sequence[str] = (),
        start: datetime | None = None,
        end: datetime | None = None,
        step: timedelta | None = None,
    ) -> agent_pb2.GetTaskMetricsResponse:
        """Call ``get_metrics`` (NotSupportedError when the connector has none)."""
        connector, meta = self._resolve(category, resource_meta, optional="get_metrics")
        return await self._call(connector, "get_metrics", resource_meta=meta, queries=list(queries),
                                start_time=start, end_time=end, step=step)

    async def get_logs(
        self, category: TaskCategory, resource_meta: bytes, lines: int = 0, token: str = ""
    ) -> AsyncIterator[agent_pb2.GetTaskLogsResponse]:
        """Stream ``get_logs`` responses (a coroutine's one, or an async generator's)."""
        connector, meta = self._resolve(category, resource_meta, optional="get_logs")
        method = connector.get_logs
        kwargs = _arguments(connector, method, {"resource_meta": meta, "lines": lines, "token": token})
        if inspect.isasyncgenfunction(method):
            try:
                async for response in method(**kwargs):
                    yield response
            except Exception as e:
                raise _wrap("get_logs", category.name, e) from e
            return
        result = await self._call(connector, "get_logs", **kwargs)
        if result is not None:
            yield result

    async def aclose(self) -> None:
        """Let idle worker threads go; calls still running finish on their own."""
        workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown()  # blocking calls still running finish on their own; nobody waits for them

    def _resolve(
        self, category: TaskCategory, data: bytes, optional: str = ""
    ) -> tuple[AsyncConnector[Any], ResourceMeta]:
        connector = self.connector(category)
        if optional and not connector.supports(optional):
            what = "metrics" if optional == "get_metrics" else "logs"
            raise NotSupportedError(f"the {category.name!r} connector has no {what}")
        return connector, connector.metadata_type.decode(data)

    async def _call(self, connector: AsyncConnector[Any], name: str, **kwargs: Any) -> Any:
        method = getattr(connector, name)
        kwargs = _arguments(connector, method, kwargs)
        try:
            if inspect.iscoroutinefunction(method):
                return await method(**kwargs)
            result = await self._in_thread(functools.partial(method, **kwargs))
            return await result if inspect.isawaitable(result) else result
        except ConnectorNbError:
            raise
        except Exception as e:
            raise _wrap(name, connector.task_type_name, e) from e

    async def _in_thread(self, fn: Callable[[], Any]) -> Any:
        """Run a blocking call in a worker; a cancelled (timed-out) call frees its slot at once."""
        if self._workers is None or self._slots is None:
            self._workers, self._slots = WorkerPool(), asyncio.Semaphore(self._max_workers)
        async with self._slots:
            return await asyncio.wrap_future(self._workers.submit(fn))


def _wrap(method: str, task_type: str, error: Exception) -> ConnectorNbError:
    """Our error for a connector's exception; secret values in either are masked (the connector may echo one)."""
    mask_error(error, {})
    if isinstance(error, NotImplementedError):
        return NotSupportedError(f"the {task_type!r} connector does not implement {method}(): {error}")
    return ConnectorCallError(method, task_type, error)


@functools.lru_cache(maxsize=512)
def _parameters(method: Callable[..., Any]) -> tuple[frozenset[str], bool]:
    params = inspect.signature(method).parameters.values()
    names = frozenset(p.name for p in params)
    return names, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _arguments(connector: AsyncConnector[Any], method: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments for a connector call: its declared secrets (as Flyte 2 passes ``Connection.secrets``;
    ones the caller sent win), then what the method accepts."""
    names = [n for n in secrets.declared(connector) if n not in kwargs]
    if names:
        kwargs = {**secrets.resolve(names), **kwargs}
    return _accepted(method, kwargs)


def _accepted(method: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Drop keyword arguments a connector method does not declare (flytekit connectors vary)."""
    names, var_kw = _parameters(getattr(method, "__func__", method))
    if var_kw:
        return kwargs
    return {k: v for k, v in kwargs.items() if k in names}
