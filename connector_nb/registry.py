"""ConnectorRegistry: task type (and version) -> connector, with entry-point discovery.

Used as in flytekit (``ConnectorRegistry.register(conn)`` on a class-level default registry) and
instantiable for isolation (``ConnectorRegistry().register(conn)``).
"""

from __future__ import annotations

import logging
import threading
import types
import warnings
from typing import Any, Callable, ClassVar, Concatenate, Generic, Iterable, Mapping, ParamSpec, TypeVar

from .connector import AsyncConnector, ResourceMeta
from .errors import ConnectorNbError, UnknownTaskTypeError

ENTRY_POINT_GROUP = "connector_nb.connectors"
log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


class _hybridmethod(Generic[P, R]):
    """A method bound to the instance, or to the default registry when called on the class."""

    def __init__(self, fn: Callable[Concatenate[ConnectorRegistry, P], R]) -> None:
        self.fn = fn
        self.__doc__ = fn.__doc__

    def __get__(self, obj: ConnectorRegistry | None, cls: type[ConnectorRegistry]) -> Callable[P, R]:
        return types.MethodType(self.fn, obj if obj is not None else cls.default())


class ConnectorRegistry:
    """Maps ``(task_type_name, task_type_version)`` to a connector instance."""

    _default: ClassVar[ConnectorRegistry | None] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, connectors: Iterable[AsyncConnector[Any] | type[AsyncConnector[Any]]] = ()) -> None:
        self._connectors: dict[tuple[str, int], AsyncConnector[Any]] = {}
        for connector in connectors:
            self.register(connector)

    @classmethod
    def default(cls) -> ConnectorRegistry:
        """The process-wide registry, with connectors from the ``connector_nb.connectors`` entry points."""
        with cls._default_lock:
            if cls._default is None:
                registry = cls()
                registry.discover()
                cls._default = registry
            return cls._default

    @classmethod
    def of(cls, registry: Any) -> ConnectorRegistry | None:
        """``registry`` as ours: None, ours itself, flytekit's / Flyte 2's ``ConnectorRegistry`` adapted, or
        ``"flytekit"`` / ``"flyte"`` for everything that framework serves (:meth:`from_framework`)."""
        if registry is None or isinstance(registry, ConnectorRegistry):
            return registry
        if isinstance(registry, str):
            return cls.from_framework(registry)
        from .adapters import foreign_connectors

        theirs = foreign_connectors(registry)
        if theirs is None:
            raise TypeError(f"registry: expected a ConnectorRegistry (ours, flytekit's or Flyte 2's), "
                            f"got {type(registry).__name__}")
        return cls(theirs)

    @classmethod
    def from_framework(cls, framework: str, **options: Any) -> ConnectorRegistry:
        """A registry of every connector ``"flytekit"`` or ``"flyte"`` (Flyte 2) serves: built-ins and plugins.

        The framework's own entry points load first (``flytekit.plugins``, ``flyte.connectors``), as
        ``pyflyte serve connector`` and ``c0`` do; ``options`` (``secrets``, ``thread_affinity``) go to each adapter.
        """
        from .adapters import adapter_module

        names = {"flytekit": "flytekit", "flyte": "flyte2", "flyte2": "flyte2"}
        if framework not in names:
            raise ValueError(f"framework: expected 'flytekit' or 'flyte', got {framework!r}")
        registry = cls()
        for connector in adapter_module(names[framework]).registered():
            registry.register(connector, **options)
        return registry

    @_hybridmethod
    def register(
        self, connector: AsyncConnector[Any] | type[AsyncConnector[Any]] | Any, override: bool = False, *,
        secrets: Mapping[str, str] | None = None, thread_affinity: bool = False,
    ) -> AsyncConnector[Any]:
        """Add a connector (instance or class). Re-defining the same class (a re-run notebook cell) replaces it.

        flytekit (``AsyncConnectorBase``, ``SyncConnectorBase``) and Flyte 2 (``AsyncConnector``) connectors are
        taken as they are, wrapped in an adapter (``connector_nb.adapters``). For those, ``secrets`` reach the
        connector as its framework expects and ``thread_affinity=True`` runs its sync methods on one thread.
        """
        instance = _validated(connector, secrets, thread_affinity)
        key = (instance.task_type_name, int(instance.task_type_version))
        existing = self._connectors.get(key)
        if existing is not None and existing is not instance and not override:
            if not _same_definition(existing, instance):
                raise ConnectorNbError(
                    f"task type {key[0]!r} version {key[1]} is already handled by {existing!r}; "
                    "pass override=True to replace it"
                )
            warnings.warn(f"re-registered {key[0]!r} v{key[1]} with the new definition of {type(instance).__name__}",
                          stacklevel=3)
        self._connectors[key] = instance
        return instance

    @_hybridmethod
    def get_connector(self, task_type_name: str, task_type_version: int = 0) -> AsyncConnector[Any]:
        """The connector for a task type; raises :class:`UnknownTaskTypeError` listing what is registered."""
        try:
            return self._connectors[(task_type_name, int(task_type_version))]
        except KeyError:
            raise UnknownTaskTypeError(task_type_name, int(task_type_version), self.describe()) from None

    @_hybridmethod
    def list_connectors(self) -> list[AsyncConnector[Any]]:
        """Every registered connector, in registration order."""
        return list(self._connectors.values())

    @_hybridmethod
    def unregister(self, task_type_name: str, task_type_version: int = 0) -> None:
        """Remove the connector for a task type (no error when absent)."""
        self._connectors.pop((task_type_name, int(task_type_version)), None)

    def describe(self) -> list[str]:
        """``"task_type (vN)"`` for each registered connector, for messages."""
        return [f"{t} (v{v})" for t, v in sorted(self._connectors)]

    def discover(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register connectors named by entry points: a connector class or instance, or a module of them."""
        from importlib.metadata import entry_points

        for ep in entry_points(group=group):
            try:
                self._register_object(ep.load())
            except Exception as e:  # one broken plugin must not hide the others
                log.warning("could not load connector entry point %r: %s", ep.name, e)

    def register_module(self, module: types.ModuleType) -> list[AsyncConnector[Any]]:
        """Register every connector instance, and every concrete AsyncConnector subclass, defined in a module.

        flytekit and Flyte 2 modules register their connectors with their framework's registry on import;
        those are taken too (e.g. ``connector-nb serve --modules`` a flytekit connector module).
        """
        from .adapters import foreign_in_module, is_foreign

        values = list(vars(module).values())
        values += [c for c in foreign_in_module(module.__name__) if all(c is not v for v in values)]
        found = []
        for value in values:
            if isinstance(value, AsyncConnector) or (is_foreign(value) and not isinstance(value, type)) or (
                isinstance(value, type) and issubclass(value, AsyncConnector)
                and value.__module__ == module.__name__ and value.task_type_name
            ):
                found.append(self.register(value, override=True))
        return found

    def _register_object(self, obj: Any) -> None:
        if isinstance(obj, types.ModuleType):
            self.register_module(obj)
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                self.register(item)
        else:
            self.register(obj)

    def __contains__(self, key: str | tuple[str, int]) -> bool:
        key = (key, 0) if isinstance(key, str) else key
        return key in self._connectors

    def __len__(self) -> int:
        return len(self._connectors)

    def __repr__(self) -> str:
        return f"<ConnectorRegistry {', '.join(self.describe()) or 'empty'}>"


def _validated(connector: Any, secrets: Mapping[str, str] | None = None,
               thread_affinity: bool = False) -> AsyncConnector[Any]:
    from .adapters import adapt, is_foreign

    if is_foreign(connector):
        return adapt(connector, secrets=secrets, thread_affinity=thread_affinity)
    if secrets is not None:
        # Our own connectors get secrets as inputs (masked everywhere), not at registration.
        raise TypeError("secrets= applies to flytekit and Flyte 2 connectors only; pass secrets as inputs")
    instance = connector() if isinstance(connector, type) else connector
    if not isinstance(instance, AsyncConnector):
        raise TypeError(f"expected an AsyncConnector (ours, flytekit's AsyncConnectorBase/SyncConnectorBase or "
                        f"Flyte 2's AsyncConnector; class or instance), got {type(connector).__name__}")
    if not instance.task_type_name:
        raise ConnectorNbError(f"{type(instance).__name__} has no task_type_name")
    if not (isinstance(instance.metadata_type, type) and issubclass(instance.metadata_type, ResourceMeta)):
        raise ConnectorNbError(f"{type(instance).__name__}.metadata_type must be a ResourceMeta subclass")
    missing = [m for m in ("create", "get", "delete") if not instance.supports(m)]
    if missing:
        raise ConnectorNbError(f"{type(instance).__name__} does not implement {', '.join(missing)}()")
    if thread_affinity:
        from .adapters.pinned import PinnedConnector

        return PinnedConnector(instance)
    checked: AsyncConnector[Any] = instance
    return checked


def _same_definition(a: AsyncConnector[Any], b: AsyncConnector[Any]) -> bool:
    # An adapter stands for the class it wraps.
    ta, tb = type(getattr(a, "wrapped", a)), type(getattr(b, "wrapped", b))
    return (ta.__module__, ta.__qualname__) == (tb.__module__, tb.__qualname__)
