"""The connector contract: ``AsyncConnector``, ``ResourceMeta``, ``Resource`` and Flyte phases.

Mirrors flytekit's ``flytekit.extend.backend.base_connector`` so connectors move between the two with
an import change. Methods may be ``def`` (run in a worker thread) or ``async def`` (awaited on the loop).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, ClassVar, Generic, Mapping, TypeVar

from .errors import MetadataError

if TYPE_CHECKING:
    from flyteidl.admin import agent_pb2
    from flyteidl.core import execution_pb2, tasks_pb2

# Flyte's TaskExecution.Phase, by name. Kept here (not read from flyteidl) so importing is cheap.
PHASES: dict[str, int] = {
    "UNDEFINED": 0, "QUEUED": 1, "RUNNING": 2, "SUCCEEDED": 3, "ABORTED": 4, "FAILED": 5,
    "INITIALIZING": 6, "WAITING_FOR_RESOURCES": 7, "RETRYABLE_FAILED": 8,
}
PHASE_NAMES: dict[int, str] = {v: k for k, v in PHASES.items()}
#: The one "terminal" set: a run in one of these phases is finished. Polling ends, the run is no longer live
#: (nothing to cancel) and the journal never reopens it. RETRYABLE_FAILED is in it: surfaced, never spun on.
TERMINAL_PHASES = frozenset({"SUCCEEDED", "FAILED", "ABORTED", "RETRYABLE_FAILED"})
#: Older name of :data:`TERMINAL_PHASES`, kept for code written against 0.1.
FINAL_PHASES = TERMINAL_PHASES
#: Progress order of phases, to flag a run that goes backwards (RUNNING -> QUEUED).
_RANK = {"UNDEFINED": 0, "QUEUED": 1, "WAITING_FOR_RESOURCES": 1, "INITIALIZING": 2, "RUNNING": 3}


def is_terminal(phase: str) -> bool:
    """Whether ``phase`` ends a run (the one definition of "terminal"; "live" is its negation)."""
    return phase in TERMINAL_PHASES


def phase_rank(phase: str) -> int:
    """How far along ``phase`` is: waiting < initializing < running < terminal."""
    return _RANK.get(phase, 4)


def phase_name(phase: int | str) -> str:
    """Normalise a phase given as a ``TaskExecution.Phase`` value or a name to its name."""
    if isinstance(phase, str):
        name = phase.upper()
        if name not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(PHASES)}")
        return name
    try:
        return PHASE_NAMES[int(phase)]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"unknown phase {phase!r}; expected a TaskExecution.Phase value 0-8") from None


@dataclass
class ResourceMeta:
    """Base of a connector's handle on its external job. Encoded as JSON bytes, never pickle.

    ``decode`` treats the bytes as untrusted (they may come off the wire): size and nesting are bounded and
    every field is checked against the dataclass annotations, so a forged meta is a MetadataError.
    """

    def encode(self) -> bytes:
        """The fields as compact JSON (finite numbers only, so ``decode`` can read them back)."""
        try:
            return json.dumps(dataclasses.asdict(self), separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as e:
            raise MetadataError(f"cannot encode {type(self).__name__} as JSON: {e}") from None

    @classmethod
    def decode(cls, data: bytes) -> ResourceMeta:
        """Rebuild the meta from ``encode``'s bytes; anything else is a MetadataError naming the field."""
        from ._args import check_fields, loads_json

        what = f"malformed {cls.__name__} bytes"
        values = loads_json(data, what, MetadataError, allow_nan=False)
        if not isinstance(values, dict):
            raise MetadataError(f"{what}: expected a JSON object, got {type(values).__name__}")
        checked = check_fields(cls, values, what)
        try:
            return cls(**checked)
        except (TypeError, ValueError) as e:  # a non-dataclass subclass, or a __post_init__ check
            raise MetadataError(f"{what}: {e}") from None


def _task_log(link: Any) -> execution_pb2.TaskLog:
    from flyteidl.core import execution_pb2

    if isinstance(link, execution_pb2.TaskLog):
        return link
    if isinstance(link, Mapping):
        return execution_pb2.TaskLog(**link)
    if isinstance(link, (tuple, list)) and len(link) == 2:
        return execution_pb2.TaskLog(name=str(link[0]), uri=str(link[1]))
    raise TypeError(f"log link must be a TaskLog, a dict or a (name, uri) pair, got {type(link).__name__}")


@dataclass
class Resource:
    """What ``get`` returns: phase, message, log links, outputs and custom info."""

    phase: str = "UNDEFINED"
    message: str = ""
    log_links: list[Any] = field(default_factory=list)
    #: A flyteidl ``LiteralMap`` or a dict of Python values.
    outputs: Any = None
    custom_info: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.phase = phase_name(self.phase)
        self.log_links = [_task_log(link) for link in self.log_links or ()]

    def masked(self) -> Resource:
        """A copy whose message, custom info and log link names have every known secret masked (by value)."""
        from .secrets import mask, mask_obj

        message, custom = mask(self.message), mask_obj(self.custom_info)
        links = [(mask(link.name), mask(link.uri)) for link in self.log_links]
        if message == self.message and custom == self.custom_info and all(
                (n, u) == (link.name, link.uri) for (n, u), link in zip(links, self.log_links)):
            return self  # nothing secret in it: no copy (this runs on every poll)
        return dataclasses.replace(self, message=message, custom_info=custom,
                                   log_links=[type(old)(name=n, uri=u) for (n, u), old in zip(links, self.log_links)])

    @property
    def phase_value(self) -> int:
        """The phase as a flyteidl ``TaskExecution.Phase`` number."""
        return PHASES[self.phase]

    @property
    def is_final(self) -> bool:
        """Whether the phase is terminal (polling ends)."""
        return is_terminal(self.phase)

    def to_flyte_idl(self, output_types: Mapping[str, Any] | None = None) -> agent_pb2.Resource:
        """This resource as ``flyteidl.admin.agent_pb2.Resource`` (dict outputs become a LiteralMap)."""
        from flyteidl.admin import agent_pb2
        from google.protobuf import json_format, struct_pb2

        from .literals import to_literal_map

        pb = agent_pb2.Resource(phase=self.phase_value, message=self.message, log_links=self.log_links)
        if self.outputs is not None:
            outputs = self.outputs
            if isinstance(outputs, Mapping):
                outputs = to_literal_map(outputs, output_types, role="output")
            pb.outputs.CopyFrom(outputs)
        if self.custom_info:
            pb.custom_info.CopyFrom(json_format.ParseDict(self.custom_info, struct_pb2.Struct()))
        return pb

    @classmethod
    def from_flyte_idl(cls, pb: agent_pb2.Resource) -> Resource:
        """A Resource from ``flyteidl.admin.agent_pb2.Resource``."""
        from google.protobuf import json_format

        return cls(
            phase=pb.phase,
            message=pb.message,
            log_links=list(pb.log_links),
            outputs=pb.outputs if pb.HasField("outputs") else None,
            custom_info=json_format.MessageToDict(pb.custom_info) if pb.HasField("custom_info") else None,
        )


#: The connector's own ResourceMeta subclass.
M = TypeVar("M", bound=ResourceMeta)


class AsyncConnector(Generic[M]):
    """Base class of a connector: subclass ``AsyncConnector[YourMeta]`` and implement ``create``, ``get``, ``delete``.

    The contract is Flyte's (flytekit's ``AsyncConnectorBase``, Flyte 2's ``AsyncConnector``). Each method may be
    ``def`` (run in a worker thread, so blocking SDK calls never stall polling) or ``async def`` (awaited on the
    engine loop). Class attributes ``input_types``/``output_types`` (name -> Python type) and ``input_defaults``
    describe the task interface; sessions, the CLI and the launch panel build and check templates from them.
    ``secrets`` names the secrets the connector needs; they arrive as keyword arguments.
    """

    name: ClassVar[str] = "Async Connector"
    task_type_name: str = ""
    task_type_version: int = 0
    metadata_type: type[ResourceMeta] = ResourceMeta
    input_types: ClassVar[Mapping[str, Any]] = {}
    output_types: ClassVar[Mapping[str, Any]] = {}
    input_defaults: ClassVar[Mapping[str, Any]] = {}
    #: Names of the secrets the connector needs: resolved from the environment or ``.env`` (``secrets.resolve``)
    #: and passed to every method as keyword arguments, as Flyte 2 passes ``Connection.secrets``.
    secrets: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        task_type_name: str | None = None,
        metadata_type: type[ResourceMeta] | None = None,
        task_type_version: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Set the task type and metadata type, flytekit style: ``super().__init__(task_type_name=..., ...)``."""
        if task_type_name is not None:
            self.task_type_name = task_type_name
        if metadata_type is not None:
            self.metadata_type = metadata_type
        if task_type_version is not None:
            self.task_type_version = task_type_version
        if "name" in kwargs:
            self.name = kwargs.pop("name")  # type: ignore[misc]

    def create(
        self,
        task_template: tasks_pb2.TaskTemplate,
        output_prefix: str,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> M | Awaitable[M]:
        """Start the external job and return its handle (an instance of ``metadata_type``).

        ``task_execution_metadata`` arrives as a keyword: its execution name is the connector_nb run id, stable
        across our retries, so a connector can deduplicate on it. Called at most once per run.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement create()")

    def get(self, resource_meta: M, **kwargs: Any) -> Resource | Awaitable[Resource]:
        """Report the job's state: phase, message, log links, outputs once it succeeded."""
        raise NotImplementedError(f"{type(self).__name__} must implement get()")

    def delete(self, resource_meta: M, **kwargs: Any) -> Awaitable[None] | None:
        """Cancel the job. Must be idempotent: deleting a finished or deleted job is not an error."""
        raise NotImplementedError(f"{type(self).__name__} must implement delete()")

    def get_metrics(
        self, resource_meta: M, **kwargs: Any
    ) -> agent_pb2.GetTaskMetricsResponse | Awaitable[agent_pb2.GetTaskMetricsResponse]:
        """Optional: Prometheus-style metric results (keywords ``queries``, ``start_time``, ``end_time``, ``step``)."""
        raise NotImplementedError(f"{type(self).__name__} has no metrics")

    def get_logs(
        self, resource_meta: M, **kwargs: Any
    ) -> agent_pb2.GetTaskLogsResponse | Awaitable[agent_pb2.GetTaskLogsResponse] | AsyncIterator[Any]:
        """Optional: log lines, one response or an async generator of them (keywords ``lines``, ``token``)."""
        raise NotImplementedError(f"{type(self).__name__} has no logs")

    def supports(self, method: str) -> bool:
        """Whether the subclass implements ``method`` (the optional ones are metrics and logs)."""
        return bool(getattr(type(self), method) is not getattr(AsyncConnector, method))

    def task_template(self, custom: Mapping[str, Any] | None = None, name: str | None = None) -> tasks_pb2.TaskTemplate:
        """A TaskTemplate for this connector's task type, with its declared interface."""
        from .template import task_template

        return task_template(
            self.task_type_name, inputs=dict(self.input_types), outputs=dict(self.output_types),
            custom=custom, version=self.task_type_version, name=name,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} task_type={self.task_type_name!r} v{self.task_type_version}>"


class AsyncConnectorBase(AsyncConnector[Any]):
    """flytekit's name for the base class: ``super().__init__(task_type_name=..., metadata_type=...)`` works.

    It is ``AsyncConnector[Any]``, so flytekit-style subclasses type-check without a type parameter.
    """



__all__ = [
    "AsyncConnector", "AsyncConnectorBase", "ResourceMeta", "Resource", "PHASES", "TERMINAL_PHASES",
    "FINAL_PHASES", "phase_name", "is_terminal", "phase_rank",
]
