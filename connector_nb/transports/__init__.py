"""Pluggable transports, one interface (``Transport``): in-process, gRPC, and a mock for tests.

``LocalTransport`` calls connector methods in this process; ``GrpcTransport`` talks to a Flyte connector
service; ``MockTransport`` answers with a function. The heavy ones load lazily.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .base import ConnectorInfo, TaskCategory, Transport

if TYPE_CHECKING:
    from ..registry import ConnectorRegistry
    from .grpc import GrpcTransport
    from .local import LocalTransport
    from .mock import MockTransport, Request

_LAZY = {"LocalTransport": "local", "GrpcTransport": "grpc", "MockTransport": "mock", "Request": "mock"}


def make_transport(
    target: str | Transport | None, registry: ConnectorRegistry | None = None, **options: Any
) -> Transport:
    """The transport for a session target: None -> in-process, ``grpc[s]://host:port`` or ``host:port`` -> gRPC.

    ``record="file.cnbrec"`` wraps it in a ``RecordingTransport`` that writes every call to that file.
    """
    record = options.pop("record", None)
    if record is not None:
        from .recording import RecordingTransport

        return RecordingTransport(make_transport(target, registry, **options), record)
    if isinstance(target, Transport):
        return target
    if target is None or target in ("", "local", "in-process"):
        from ..registry import ConnectorRegistry
        from .local import LocalTransport

        return LocalTransport(ConnectorRegistry.of(registry))  # flytekit's or Flyte 2's registry too
    from .grpc import GrpcTransport

    return GrpcTransport(target, **options)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'connector_nb.transports' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [
    "ConnectorInfo", "GrpcTransport", "LocalTransport", "MockTransport", "Request", "TaskCategory", "Transport",
    "make_transport",
]
