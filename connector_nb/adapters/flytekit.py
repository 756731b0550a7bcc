"""flytekit connectors (``AsyncConnectorBase``, ``SyncConnectorBase``) in-process, unmodified.

Protos cross into flytekit's model objects (``TaskTemplate``, ``LiteralMap``, ``TaskExecutionMetadata``) by
their own ``from_flyte_idl``; their ``Resource`` comes back as ours. Secrets reach the connector the way
flytekit's connector service gives them: through flytekit's secrets manager (its ``_FSEC_<KEY>`` variables),
which is what ``get_connector_secret`` reads.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping

from flytekit.extend.backend import base_connector as fk

from ..connector import Resource
from ._base import ForeignAdapter, OpaqueMeta, bound_template, to_resource

if TYPE_CHECKING:
    from flyteidl.admin import agent_pb2
    from flyteidl.core import tasks_pb2

#: Modules whose import registers the connectors ``pyflyte serve connector`` serves with no ``--modules``.
BUILTIN_MODULES = ("flytekit.sensor.sensor_engine", "flytekit.extras.webhook")


class _FlytekitAdapter(ForeignAdapter):
    def __init__(self, wrapped: Any, *, secrets: Mapping[str, str] | None = None,
                 thread_affinity: bool = False) -> None:
        """Adapt ``wrapped``; ``secrets`` go to flytekit's secrets manager, where ``get_connector_secret`` looks."""
        super().__init__(wrapped, secrets=secrets, thread_affinity=thread_affinity)
        if self._secrets:
            _expose_secrets(self._secrets)

    def category_of(self, wrapped: Any) -> tuple[str, int]:
        """flytekit keeps the task type on ``task_category``."""
        return str(wrapped.task_category.name), int(wrapped.task_category.version)

    async def _their_arguments(
        self, task_template: tasks_pb2.TaskTemplate, inputs: Mapping[str, Any] | None, metadata: Any
    ) -> dict[str, Any]:
        from flytekit.models.literals import LiteralMap
        from flytekit.models.task import TaskExecutionMetadata, TaskTemplate

        template, literals = bound_template(task_template, inputs)
        return {
            "task_template": TaskTemplate.from_flyte_idl(template),
            "inputs": LiteralMap.from_flyte_idl(literals),
            "task_execution_metadata": TaskExecutionMetadata.from_flyte_idl(metadata) if metadata else None,
        }


class FlytekitAsyncAdapter(_FlytekitAdapter):
    """Runs a flytekit ``AsyncConnectorBase`` (SensorEngine, BigQuery, Databricks, ...) as our connector."""

    base = "flytekit AsyncConnectorBase"

    def framework_base(self) -> type:
        """flytekit's AsyncConnectorBase."""
        base: type = fk.AsyncConnectorBase
        return base

    async def create(
        self, task_template: tasks_pb2.TaskTemplate, output_prefix: str, inputs: dict[str, Any] | None = None,
        task_execution_metadata: agent_pb2.TaskExecutionMetadata | None = None, **kwargs: Any,
    ) -> OpaqueMeta:
        """Their ``create`` with flytekit models; their metadata kept as the bytes of their own ``encode``."""
        arguments = await self._their_arguments(task_template, inputs, task_execution_metadata)
        meta = await self.call("create", output_prefix=output_prefix, **arguments)
        return OpaqueMeta(meta.encode())

    async def get(self, resource_meta: OpaqueMeta, **kwargs: Any) -> Resource:
        """Their ``get`` on their decoded metadata, its Resource as ours."""
        return from_flytekit(await self.call("get", resource_meta=self._meta(resource_meta)))

    async def delete(self, resource_meta: OpaqueMeta, **kwargs: Any) -> None:
        """Their ``delete``."""
        await self.call("delete", resource_meta=self._meta(resource_meta))

    async def get_metrics(self, resource_meta: OpaqueMeta, **kwargs: Any) -> agent_pb2.GetTaskMetricsResponse:
        """Their ``get_metrics`` (already a flyteidl v1 message)."""
        response: agent_pb2.GetTaskMetricsResponse = await self.call("get_metrics",
                                                                     resource_meta=self._meta(resource_meta))
        return response

    async def get_logs(self, resource_meta: OpaqueMeta, **kwargs: Any) -> AsyncIterator[agent_pb2.GetTaskLogsResponse]:
        """Their ``get_logs``: one response, or each one of an async generator."""
        fn = self.wrapped.get_logs
        meta = self._meta(resource_meta)
        if _is_async_gen(fn):
            try:
                async for response in fn(resource_meta=meta):
                    yield response
            except Exception as e:
                self.mask(e)
                raise
            return
        yield await self.call("get_logs", resource_meta=meta)

    def _meta(self, meta: OpaqueMeta) -> Any:
        return self.wrapped.metadata_type.decode(meta.data)


class FlytekitSyncAdapter(_FlytekitAdapter):
    """Runs a flytekit ``SyncConnectorBase`` (the webhook connector, ...): ``create`` calls ``do()``.

    The run is final at once: the final Resource travels as its metadata (the bytes of a flyteidl
    ``Resource``), so the first ``get`` returns it and the run shows the same transitions as any other.
    """

    base = "flytekit SyncConnectorBase"
    is_sync = True

    def framework_base(self) -> type:
        """flytekit's SyncConnectorBase."""
        base: type = fk.SyncConnectorBase
        return base

    def supports(self, method: str) -> bool:
        """create, get and delete only: the call already returned everything there is."""
        return method in ("create", "get", "delete")

    async def do(
        self, task_template: tasks_pb2.TaskTemplate, output_prefix: str, inputs: dict[str, Any] | None = None,
        task_execution_metadata: agent_pb2.TaskExecutionMetadata | None = None, **kwargs: Any,
    ) -> Resource:
        """Their ``do()``, its Resource as ours."""
        arguments = await self._their_arguments(task_template, inputs, task_execution_metadata)
        arguments.pop("task_execution_metadata")  # flytekit's service never passes it to do()
        return from_flytekit(await self.call("do", output_prefix=output_prefix, **arguments))

    async def create(
        self, task_template: tasks_pb2.TaskTemplate, output_prefix: str, inputs: dict[str, Any] | None = None,
        task_execution_metadata: agent_pb2.TaskExecutionMetadata | None = None, **kwargs: Any,
    ) -> OpaqueMeta:
        """Run ``do()`` now; the final Resource becomes the metadata."""
        from ..template import interface_types

        resource = await self.do(task_template, output_prefix, inputs, task_execution_metadata)
        return OpaqueMeta(resource.to_flyte_idl(interface_types(task_template)[1]).SerializeToString())

    async def get(self, resource_meta: OpaqueMeta, **kwargs: Any) -> Resource:
        """The Resource ``do()`` returned."""
        from flyteidl.admin import agent_pb2

        return Resource.from_flyte_idl(agent_pb2.Resource.FromString(resource_meta.data))

    async def delete(self, resource_meta: OpaqueMeta, **kwargs: Any) -> None:
        """Nothing to cancel: ``do()`` has returned."""


def from_flytekit(theirs: Any) -> Resource:
    """Our Resource from flytekit's (outputs: a flytekit LiteralMap becomes the proto, a dict stays a dict)."""
    return to_resource(theirs, outputs=lambda o: o.to_flyte_idl() if hasattr(o, "to_flyte_idl") else dict(o))


def registered() -> list[Any]:
    """flytekit's built-in connectors and those of its plugins (``flytekit.plugins`` entry points load on import)."""
    import importlib

    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    return list(fk.ConnectorRegistry._REGISTRY.values())


def task_template_of(task: Any) -> tasks_pb2.TaskTemplate:
    """The TaskTemplate of a flytekit task object (e.g. ``FileSensor(name=...)``), by flytekit's serialization."""
    from flytekit.configuration import ImageConfig, SerializationSettings
    from flytekit.tools.translator import get_serializable

    # The settings flytekit's own local connector execution uses (AsyncConnectorExecutorMixin.execute).
    spec = get_serializable(OrderedDict(), SerializationSettings(ImageConfig.auto_default_image()), task)
    template: tasks_pb2.TaskTemplate = spec.template.to_flyte_idl()
    return template


def _expose_secrets(secrets: Mapping[str, str]) -> None:
    """Put each secret where flytekit's SecretsManager reads it (``get_connector_secret(key)``)."""
    from flytekit.core.context_manager import SecretsManager

    manager = SecretsManager()
    for key, value in secrets.items():
        os.environ[manager.get_secrets_env_var(key=key)] = value


def _is_async_gen(fn: Any) -> bool:
    import inspect

    return inspect.isasyncgenfunction(fn)
