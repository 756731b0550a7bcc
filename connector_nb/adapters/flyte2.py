"""Flyte 2 connectors (``flyte.connectors.AsyncConnector``) in-process, unmodified.

Flyte 2 speaks flyteidl2, whose messages are wire-compatible with flyteidl v1 (renames and additions on the
same field numbers), so protos cross through bytes. Inputs arrive as Python values and secrets as keyword
arguments, exactly as Flyte 2's connector service passes ``Connection.secrets``/``configs``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator

from flyte.connectors import _connector as f2

from ..connector import Resource
from ._base import ForeignAdapter, OpaqueMeta, convert_proto, to_resource

if TYPE_CHECKING:
    from flyteidl.admin import agent_pb2
    from flyteidl.core import tasks_pb2


class Flyte2Adapter(ForeignAdapter):
    """Runs a Flyte 2 ``AsyncConnector`` as our connector."""

    base = "Flyte 2 AsyncConnector"

    def framework_base(self) -> type:
        """Flyte 2's AsyncConnector."""
        base: type = f2.AsyncConnector
        return base

    async def create(
        self, task_template: tasks_pb2.TaskTemplate, output_prefix: str, inputs: dict[str, Any] | None = None,
        task_execution_metadata: agent_pb2.TaskExecutionMetadata | None = None, **kwargs: Any,
    ) -> OpaqueMeta:
        """Their ``create`` with a flyteidl2 template, Python inputs and the secrets as keywords."""
        from flyteidl2.connector import connector_pb2
        from flyteidl2.core import tasks_pb2 as tasks2

        metadata = None
        if task_execution_metadata is not None:
            metadata = convert_proto(task_execution_metadata, connector_pb2.TaskExecutionMetadata)
        meta = await self.call(
            "create", task_template=convert_proto(task_template, tasks2.TaskTemplate), output_prefix=output_prefix,
            inputs=dict(inputs or {}), task_execution_metadata=metadata, **self._connection(kwargs),
        )
        return OpaqueMeta(meta.encode())

    async def get(self, resource_meta: OpaqueMeta, **kwargs: Any) -> Resource:
        """Their ``get``, its Resource as ours (flyteidl2 log links converted to v1)."""
        from flyteidl.core import execution_pb2

        theirs = await self.call("get", resource_meta=self._meta(resource_meta), **self._connection(kwargs))
        return to_resource(theirs, log_link=lambda link: convert_proto(link, execution_pb2.TaskLog),
                           outputs=_outputs)

    async def delete(self, resource_meta: OpaqueMeta, **kwargs: Any) -> None:
        """Their ``delete``, with the secrets as keywords."""
        await self.call("delete", resource_meta=self._meta(resource_meta), **self._connection(kwargs))

    async def get_metrics(self, resource_meta: OpaqueMeta, **kwargs: Any) -> agent_pb2.GetTaskMetricsResponse:
        """Their ``get_metrics``, as a flyteidl v1 message."""
        from flyteidl.admin import agent_pb2

        response = await self.call("get_metrics", resource_meta=self._meta(resource_meta))
        metrics: agent_pb2.GetTaskMetricsResponse = convert_proto(response, agent_pb2.GetTaskMetricsResponse)
        return metrics

    async def get_logs(self, resource_meta: OpaqueMeta, **kwargs: Any) -> AsyncIterator[agent_pb2.GetTaskLogsResponse]:
        """Their ``get_logs`` (one response or an async generator), each as v1 with its lines as text too."""
        import inspect

        result = self.wrapped.get_logs(resource_meta=self._meta(resource_meta), token=kwargs.get("token", ""))
        try:
            if inspect.isasyncgen(result):
                async for response in result:
                    yield _v1_logs(response)
            else:
                yield _v1_logs(await result)
        except Exception as e:
            self.mask(e)
            raise

    def _meta(self, meta: OpaqueMeta) -> Any:
        return self.wrapped.metadata_type.decode(meta.data)

    def _connection(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Secrets and configs as keywords (registered ones, then any the caller sent, as Flyte 2's server does)."""
        return {**self._secrets, **kwargs}


def _outputs(outputs: Any) -> Any:
    """Flyte 2 returns a dict of Python values; a LiteralMap of either generation becomes a v1 proto."""
    if isinstance(outputs, dict):
        return dict(outputs)
    from flyteidl.core import literals_pb2

    return convert_proto(outputs, literals_pb2.LiteralMap)


def _v1_logs(response: Any) -> agent_pb2.GetTaskLogsResponse:
    """A v2 logs response as v1: ``lines`` land in ``structured_lines`` (same field), their text in ``results``."""
    from flyteidl.admin import agent_pb2

    v1: agent_pb2.GetTaskLogsResponse = convert_proto(response, agent_pb2.GetTaskLogsResponse)
    if v1.HasField("body") and not v1.body.results:
        v1.body.results.extend(line.message for line in v1.body.structured_lines)
    return v1


def registered() -> list[Any]:
    """Flyte 2's registered connectors, after loading its ``flyte.connectors`` entry points as ``c0`` does."""
    from flyte.connectors.utils import _load_connectors

    _load_connectors(None)
    return list(f2.ConnectorRegistry._REGISTRY.values())


def task_template_of(task: Any) -> tasks_pb2.TaskTemplate:
    """The TaskTemplate of a Flyte 2 task object, by Flyte 2's own serializer (what a deployment sends).

    Uses ``flyte._internal.runtime.task_serde.get_proto_task``, the function Flyte 2's local connector runner
    calls; the flyteidl2 template becomes v1 through bytes.
    """
    import pathlib

    from flyte._internal.runtime.task_serde import get_proto_task
    from flyte.models import SerializationContext
    from flyteidl.core import tasks_pb2

    from ..errors import InputError

    context = SerializationContext(version="connector-nb", project="connector_nb", domain="development",
                                   root_dir=pathlib.Path.cwd())
    try:
        template2 = get_proto_task(task, context)
    except Exception as e:  # e.g. a task outside any TaskEnvironment: Flyte 2 names what is missing
        raise InputError(f"task: Flyte 2 could not serialize {getattr(task, 'name', task)!r}: {e}") from e
    template: tasks_pb2.TaskTemplate = convert_proto(template2, tasks_pb2.TaskTemplate)
    return template
