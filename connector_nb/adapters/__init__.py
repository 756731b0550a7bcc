"""Foreign connectors in-process, unmodified: flytekit's and Flyte 2's connectors behind our contract.

An adapter is chosen by the foreign object's base class (found by name in its MRO, so nothing here imports
a framework until one of its objects shows up). It converts at the boundary: our protos to their model
objects, their ``Resource`` to ours, and keeps their metadata as opaque bytes made and read only by their
own ``encode``/``decode``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Mapping

from ._lookup import ADAPTERS, REGISTRIES, TASKS, _match, adapter_module, task_template_of

if TYPE_CHECKING:
    from ._base import ForeignAdapter


def is_foreign(obj: Any) -> bool:
    """Whether ``obj`` (instance or class) is a flytekit or Flyte 2 connector we can adapt."""
    return _match(obj, ADAPTERS) is not None


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


def foreign_in_module(module_name: str) -> list[Any]:
    """Connectors a module registered with flytekit's or Flyte 2's registry on import (how their modules work).

    Only registries already imported are looked at: a module that registered there has imported them.
    """
    found: list[Any] = []
    for path in REGISTRIES:
        owner, _, name = path.rpartition(".")
        registry = getattr(sys.modules.get(owner), name, None)
        if registry is not None:
            found += [c for c in registry._REGISTRY.values() if type(c).__module__ == module_name]
    return found


__all__ = [
    "ADAPTERS", "REGISTRIES", "TASKS", "adapt", "adapter_module", "foreign_connectors", "foreign_in_module",
    "is_foreign",
    "task_template_of",
]
