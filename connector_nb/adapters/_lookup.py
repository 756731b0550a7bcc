"""Which adapter handles a foreign object, found by base-class name: imports no framework, and nothing of ours
but errors (``template`` uses it, so it must stay a leaf of the import graph)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import MissingExtraError

if TYPE_CHECKING:
    from flyteidl.core import tasks_pb2

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


def adapter_module(name: str) -> Any:
    """``connector_nb.adapters.<name>``; MissingExtraError names the extra when its framework is missing."""
    try:
        return importlib.import_module(f"connector_nb.adapters.{name}")
    except ModuleNotFoundError as e:
        framework, extra = FRAMEWORKS[name]
        if e.name and e.name.split(".")[0] in ("flytekit", "flyte", "flyteidl2"):
            raise MissingExtraError(framework, extra, f"running {framework} connectors") from None
        raise


def task_template_of(task: Any) -> tasks_pb2.TaskTemplate | None:
    """The TaskTemplate of a flytekit (or Flyte 2) task object, by the framework's own serialization."""
    name = _match(task, TASKS)
    if name is None:
        return None
    template: tasks_pb2.TaskTemplate = adapter_module(name).task_template_of(task)
    return template
