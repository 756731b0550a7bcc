"""Foreign connectors in-process, unmodified: flytekit's and Flyte 2's connectors behind our contract.

An adapter is chosen by the foreign object's base class (found by name in its MRO, so nothing here imports
a framework until one of its objects shows up). It converts at the boundary: our protos to their model
objects, their ``Resource`` to ours, and keeps their metadata as opaque bytes made and read only by their
own ``encode``/``decode``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import MissingExtraError

if TYPE_CHECKING:
    from flyteidl.core import tasks_pb2

    from ._base import ForeignAdapter

#: Foreign base class (module.qualname) -> (adapter module, adapter class).
ADAPTERS: dict[str, tuple[str, str]] = {
    "flytekit.extend.backend.base_connector.AsyncConnectorBase": ("flytekit", "FlytekitAsyncAdapter"),
    "flytekit.extend.backend.base_connector.SyncConnectorBase": ("flytekit", "FlytekitSyncAdapter"),
    "flyte.connectors._connector.AsyncConnector": ("flyte2", "Flyte2Adapter"),
}
#: Foreign registries (module.qualname) whose connectors ``Session(registry=...)`` takes over.
REGISTRIES: dict[str, str] = {
    "flytekit.extend.backend.base_connector.ConnectorRegistry": "flytekit",
    "flyte.connectors._connector.ConnectorRegistry": "flyte2",
}
#: Task classes (module.qualname in the MRO) -> adapter module that builds their TaskTemplate.
TASKS: dict[str, str] = {
    "flytekit.core.base_task.PythonTask": "flytekit",
    "flyte._task.TaskTemplate": "flyte2",
}
#: Adapter module -> (framework, pip extra), for errors.
FRAMEWORKS: dict[str, tuple[str, str]] = {"flytekit": ("flytekit", "flytekit"), "flyte2": ("Flyte 2", "flyte")}


def _names(obj: Any) -> list[str]:
    cls = obj if isinstance(obj, type) else type(obj)
    return [f"{c.__module__}.{c.__qualname__}" for c in getattr(cls, "__mro__", (cls,))]


def _match(obj: Any, table: Mapping[str, Any]) -> Any:
    return next((table[n] for n in _names(obj) if n in table), None)


def is_foreign(obj: Any) -> bool:
    """Whether ``obj`` (instance or class) is a flytekit or Flyte 2 connector we can adapt."""
    return _match(obj, ADAPTERS) is not None


def adapter_module(name: str) -> Any:
    """``connector_nb.adapters.<name>``; MissingExtraError names the extra when its framework is missing."""
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        framework, extra = FRAMEWORKS[name]
        if e.name and e.name.split(".")[0] in ("flytekit", "flyte", "flyteidl2"):
            raise MissingExtraError(framework, extra, f"running {framework} connectors") from None
        raise


def adapt(obj: Any, *, secrets: Mapping[str, str] | None = None, thread_affinity: bool = False) -> ForeignAdapter:
    """Wrap a flytekit or Flyte 2 connector (instance, or class taking no arguments) in its adapter."""
    found = _match(obj, ADAPTERS)
    if found is None:
        raise TypeError(f"connector: expected a flytekit or Flyte 2 connector, got {type(obj).__name__}")
    instance = obj() if isinstance(obj, type) else obj
    adapter: ForeignAdapter = getattr(adapter_module(found[0]), found[1])(
        instance, secrets=secrets, thread_affinity=thread_affinity
    )
    return adapter


def foreign_connectors(registry: Any) -> list[Any] | None:
    """The connectors held by flytekit's or Flyte 2's ``ConnectorRegistry`` (class or instance); None otherwise."""
    if _match(registry, REGISTRIES) is None:
        return None
    return list(registry._REGISTRY.values())  # both keep them in this class-level dict


def task_template_of(task: Any) -> tasks_pb2.TaskTemplate | None:
    """The TaskTemplate of a flytekit (or Flyte 2) task object, by the framework's own serialization."""
    name = _match(task, TASKS)
    if name is None:
        return None
    template: tasks_pb2.TaskTemplate = adapter_module(name).task_template_of(task)
    return template


__all__ = ["ADAPTERS", "adapt", "adapter_module", "foreign_connectors", "is_foreign", "task_template_of"]
