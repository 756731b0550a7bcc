"""Pluggable transports: in-process (``LocalTransport``) and gRPC (``GrpcTransport``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import ConnectorInfo, TaskCategory, Transport

if TYPE_CHECKING:
    from ..registry import ConnectorRegistry


def make_transport(
    target: str | Transport | None, registry: ConnectorRegistry | None = None, **options: Any
) -> Transport:
    """The transport for a session target: None -> in-process, ``grpc[s]://host:port`` or ``host:port`` -> gRPC."""
    if isinstance(target, Transport):
        return target
    if target is None or target in ("", "local", "in-process"):
        from .local import LocalTransport

        return LocalTransport(registry)
    from .grpc import GrpcTransport

    return GrpcTransport(target, **options)


__all__ = ["ConnectorInfo", "TaskCategory", "Transport", "make_transport"]
