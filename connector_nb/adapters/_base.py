"""What every adapter shares: opaque metadata, calling their methods, masking secrets, Resource conversion."""

from __future__ import annotations

import asyncio
import functools
import inspect
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from ..connector import AsyncConnector, Resource, ResourceMeta, phase_name
from ..secrets import mask_text, remember

if TYPE_CHECKING:
    from flyteidl.core import literals_pb2, tasks_pb2


@dataclass
class OpaqueMeta(ResourceMeta):
    """A foreign connector's metadata bytes, untouched: only its own ``decode`` ever reads them."""

    data: bytes = b""

    def encode(self) -> bytes:
        """The bytes as the foreign connector encoded them."""
        return self.data

    @classmethod
    def decode(cls, data: bytes) -> OpaqueMeta:
        """Wrap the bytes; decoding them is the foreign connector's business."""
        return cls(bytes(data))

    def __repr__(self) -> str:
        return f"OpaqueMeta({len(self.data)} bytes)"


class ForeignAdapter(AsyncConnector[OpaqueMeta]):
    """Presents a foreign connector (``wrapped``) as our ``AsyncConnector``; subclasses convert per framework."""

    #: The framework's base class the adapter is keyed on, e.g. ``"flytekit AsyncConnectorBase"``.
    base: ClassVar[str] = ""
    #: Sync connectors (flytekit ``SyncConnectorBase``): ``create`` runs ``do()`` and the run is final at once.
    is_sync: ClassVar[bool] = False
    metadata_type = OpaqueMeta

    def __init__(self, wrapped: Any, *, secrets: Mapping[str, str] | None = None,
                 thread_affinity: bool = False) -> None:
        """Adapt ``wrapped``; ``secrets`` reach it as its framework expects; ``thread_affinity`` pins sync calls."""
        super().__init__()
        self.wrapped = wrapped
        self.name = str(getattr(wrapped, "name", "") or type(wrapped).__name__)  # type: ignore[misc]
        self.task_type_name, self.task_type_version = self.category_of(wrapped)
        self._secrets = {str(k): str(v) for k, v in (secrets or {}).items()}
        remember(*self._secrets.values())  # masked by value everywhere, not only in the errors passed on
        # One dedicated thread for all sync calls: for connectors keeping thread-local state (Airflow's).
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"cnb-{self.task_type_name}") if thread_affinity \
            else None

    @property
    def thread_affinity(self) -> bool:
        """Whether the wrapped connector's sync methods all run on one dedicated thread."""
        return self._thread is not None

    def category_of(self, wrapped: Any) -> tuple[str, int]:
        """The (task type, version) the wrapped connector handles."""
        return str(wrapped.task_type_name), int(getattr(wrapped, "task_type_version", 0) or 0)

    def framework_base(self) -> type:
        """The framework base class whose methods mean "not implemented"."""
        raise NotImplementedError

    def supports(self, method: str) -> bool:
        """Whether the wrapped connector implements ``method`` (metrics and logs are optional)."""
        if method in ("create", "get", "delete"):
            return True
        mine = getattr(type(self.wrapped), method, None)
        return mine is not None and mine is not getattr(self.framework_base(), method, None)

    async def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped connector's ``method``: awaited if async, else in a worker (or the pinned) thread."""
        fn = getattr(self.wrapped, method)
        try:
            if inspect.iscoroutinefunction(fn):
                return await fn(*args, **kwargs)
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._thread, functools.partial(fn, *args, **kwargs))
            return await result if inspect.isawaitable(result) else result
        except Exception as e:
            self.mask(e)
            raise  # their exception itself, so Run.debug() lands in their code

    def mask(self, error: BaseException) -> BaseException:
        """Mask this adapter's secret values in an exception's message and its causes, in place."""
        secrets = sorted(self._secrets.values(), key=len, reverse=True)
        seen: BaseException | None = error
        visited: set[int] = set()
        while secrets and seen is not None and id(seen) not in visited:  # a chain may loop back on itself
            visited.add(id(seen))
            seen.args = tuple(mask_text(a, secrets) if isinstance(a, str) else a for a in seen.args)
            seen = seen.__cause__ or seen.__context__
        return error

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} of {type(self.wrapped).__name__} {self.name!r} "
                f"task_type={self.task_type_name!r} v{self.task_type_version}>")


def to_resource(theirs: Any, log_link: Any = None, outputs: Any = None) -> Resource:
    """Our Resource from a flytekit/Flyte 2 ``Resource`` (same fields); ``log_link``/``outputs`` convert those."""
    links = list(getattr(theirs, "log_links", None) or ())
    raw_outputs = getattr(theirs, "outputs", None)
    return Resource(
        phase=phase_name(theirs.phase),
        message=str(getattr(theirs, "message", "") or ""),
        log_links=[log_link(link) for link in links] if log_link else links,
        outputs=outputs(raw_outputs) if outputs and raw_outputs is not None else raw_outputs,
        custom_info=dict(theirs.custom_info) if getattr(theirs, "custom_info", None) else None,
    )


def bound_template(
    template: tasks_pb2.TaskTemplate, inputs: Mapping[str, Any] | None
) -> tuple[tasks_pb2.TaskTemplate, literals_pb2.LiteralMap]:
    """The template, with an input interface inferred when it declares none (a launch by name), and the literals.

    Foreign connectors read the interface (flytekit's SensorEngine types its inputs by it).
    """
    from flyteidl.core import tasks_pb2

    from ..literals import to_literal_map
    from ..template import interface_types, with_inferred_interface

    values = dict(inputs or {})
    types, _ = interface_types(template)
    if values and not types:
        inferred = with_inferred_interface(template.type, values)
        copy = tasks_pb2.TaskTemplate()
        copy.CopyFrom(template)
        copy.interface.inputs.CopyFrom(inferred.interface.inputs)
        template, types = copy, interface_types(inferred)[0]
    return template, to_literal_map(values, {n: t for n, t in types.items() if n in values})


def convert_proto(message: Any, target: Any) -> Any:
    """A message of another flyteidl generation with the same wire shape, through bytes (v1 <-> v2)."""
    return target.FromString(message.SerializeToString())
