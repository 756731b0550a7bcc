"""The one interface every transport implements (in-process and gRPC), shaped like the flyteidl services.

Resource metadata crosses this boundary as bytes, exactly as on the wire, so the in-process transport
exercises the same encode/decode path as a real connector service.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping, Sequence

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from flyteidl.admin import agent_pb2
    from flyteidl.core import literals_pb2, tasks_pb2

    from ..connector import Resource
    from ..registry import ConnectorRegistry


@dataclass(frozen=True)
class TaskCategory:
    """A task type and version, as in ``flyteidl.admin.agent_pb2.TaskCategory``."""

    name: str
    version: int = 0

    def __str__(self) -> str:
        return f"{self.name} (v{self.version})"

    @classmethod
    def of(cls, template: tasks_pb2.TaskTemplate) -> TaskCategory:
        """The category a TaskTemplate is for (its type and task type version)."""
        return cls(template.type, template.task_type_version)


@dataclass(frozen=True)
class ConnectorInfo:
    """One connector a target offers."""

    name: str
    task_type: str
    version: int = 0
    is_sync: bool = False


class Transport(abc.ABC):
    """Talks to connectors. All methods are coroutines on the session's loop."""

    #: Human-readable target, e.g. ``"in-process"`` or ``"grpc://127.0.0.1:8000"``.
    target: str = ""
    #: The registry whose connectors run in this process (None for a remote service).
    registry: ConnectorRegistry | None = None

    @abc.abstractmethod
    async def connectors(self) -> list[ConnectorInfo]:
        """What the target offers: name, task type, version, sync or not."""

    async def task_template(
        self, category: TaskCategory, custom: dict[str, Any] | None = None
    ) -> tasks_pb2.TaskTemplate | None:
        """The declared template for a task type, or None when the target does not say (gRPC)."""
        return None

    def input_defaults(self, category: TaskCategory) -> dict[str, Any]:
        """Default input values of a task type, where the target declares them (in-process only)."""
        return {}

    async def resolve(
        self, task: str | tasks_pb2.TaskTemplate, version: int = 0, custom: Mapping[str, Any] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> tuple[TaskCategory, tasks_pb2.TaskTemplate, dict[str, Any]]:
        """The category, template and input defaults for a launch of ``task`` (a type name or a template).

        A target that publishes no interface (a remote service) gets one inferred from the values.
        """
        from ..template import with_custom, with_inferred_interface

        if not isinstance(task, str):
            template = with_custom(task, custom)
            return TaskCategory.of(template), template, {}
        category = TaskCategory(task, version)
        found = await self.task_template(category, dict(custom) if custom else None)
        template = found or with_inferred_interface(task, dict(values or {}), custom=custom, version=version)
        return category, template, self.input_defaults(category)

    @abc.abstractmethod
    async def create(
        self,
        template: tasks_pb2.TaskTemplate,
        inputs: literals_pb2.LiteralMap,
        output_prefix: str,
        task_execution_metadata: agent_pb2.TaskExecutionMetadata | None = None,
    ) -> bytes:
        """Start a job; returns its encoded resource metadata. Never retried once it may have been sent."""

    async def is_sync(self, category: TaskCategory) -> bool:
        """Whether ``category``'s connector is sync (``execute_sync`` instead of create/get); False by default."""
        return False

    async def execute_sync(
        self,
        template: tasks_pb2.TaskTemplate,
        inputs: literals_pb2.LiteralMap,
        output_prefix: str,
        task_execution_metadata: agent_pb2.TaskExecutionMetadata | None = None,
    ) -> Resource:
        """Run a sync connector's job to its end; returns its final Resource. Never retried once sent."""
        from ..errors import NotSupportedError

        raise NotSupportedError(f"{self.target or type(self).__name__} cannot run sync connectors "
                                f"(task type {template.type!r})")

    @abc.abstractmethod
    async def get(self, category: TaskCategory, resource_meta: bytes, output_prefix: str = "") -> Resource:
        """The job's current state."""

    @abc.abstractmethod
    async def delete(self, category: TaskCategory, resource_meta: bytes) -> None:
        """Cancel the job (idempotent)."""

    @abc.abstractmethod
    async def get_metrics(
        self,
        category: TaskCategory,
        resource_meta: bytes,
        queries: Sequence[str] = (),
        start: datetime | None = None,
        end: datetime | None = None,
        step: timedelta | None = None,
    ) -> agent_pb2.GetTaskMetricsResponse:
        """Prometheus-style metric results of the job."""

    @abc.abstractmethod
    def get_logs(
        self, category: TaskCategory, resource_meta: bytes, lines: int = 0, token: str = ""
    ) -> AsyncIterator[agent_pb2.GetTaskLogsResponse]:
        """Stream of responses: optionally a header (continuation token), then bodies."""

    async def aclose(self) -> None:  # noqa: B027 (optional hook: most transports hold nothing)
        """Release connections and worker threads."""
