"""connector_nb: run Flyte-style connectors live inside Jupyter.

Public names are loaded lazily (PEP 562) so that ``import connector_nb`` stays fast: flyteidl, pandas,
ipywidgets and grpc are imported only when a name that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "MissingExtraError": "errors",
    "LimitExceededError": "errors",
    "ServeRefusedError": "errors",
    "JournalVersionError": "errors",
    "JournalError": "errors",
    "SecretNotFoundError": "errors",
    "AsyncConnector": "connector",
    "AsyncConnectorBase": "connector",
    "ResourceMeta": "connector",
    "Resource": "connector",
    "ConnectorRegistry": "registry",
    "Session": "session",
    "AsyncSession": "session",
    "Run": "run",
    "Transition": "run",
    "WaitInterrupted": "run",
    "Transport": "transports",
    "LocalTransport": "transports",
    "GrpcTransport": "transports",
    "MockTransport": "transports",
    "PollPolicy": "polling",
    "task_template": "template",
    "serve": "server",
    "progress": "ui.progress",
    "ConnectorNbError": "errors",
    "UnknownTaskTypeError": "errors",
    "InputError": "errors",
    "MetadataError": "errors",
    "ConnectorCallError": "errors",
    "PollingStoppedError": "errors",
    "ServiceUnavailableError": "errors",
    "LiteralConversionError": "errors",
    "NotSupportedError": "errors",
    "EngineError": "errors",
    "SessionClosedError": "errors",
    "CreateOutcomeUnknownError": "errors",
    "CallTimeoutError": "errors",
    "UnknownRunError": "errors",
    "AuthError": "errors",
}

# A literal list, so type checkers see the lazily loaded names as exported (tests keep it equal to _LAZY).
__all__ = [
    "AsyncConnector", "AsyncConnectorBase", "AsyncSession", "AuthError", "CallTimeoutError", "ConnectorCallError",
    "ConnectorNbError", "ConnectorRegistry", "CreateOutcomeUnknownError", "EngineError", "GrpcTransport",
    "InputError", "JournalError", "JournalVersionError", "LimitExceededError", "LiteralConversionError",
    "LocalTransport", "MetadataError", "MissingExtraError", "MockTransport", "NotSupportedError", "PollPolicy",
    "PollingStoppedError", "Resource", "ResourceMeta", "Run", "SecretNotFoundError", "ServeRefusedError",
    "ServiceUnavailableError", "Session", "SessionClosedError", "Transition", "Transport", "UnknownRunError",
    "UnknownTaskTypeError", "WaitInterrupted", "__version__", "progress", "serve", "task_template",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'connector_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext connector_nb``: register the ``%connector`` and ``%%connector`` magics."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext connector_nb``: remove the magics."""
    from .magics import unload_ipython_extension as unload

    unload(ipython)


if TYPE_CHECKING:  # for type checkers and IDEs; at run time names load lazily above
    from .connector import AsyncConnector, AsyncConnectorBase, Resource, ResourceMeta
    from .errors import (
        AuthError,
        CallTimeoutError,
        ConnectorCallError,
        ConnectorNbError,
        CreateOutcomeUnknownError,
        EngineError,
        InputError,
        JournalError,
        JournalVersionError,
        LimitExceededError,
        LiteralConversionError,
        MetadataError,
        MissingExtraError,
        NotSupportedError,
        PollingStoppedError,
        SecretNotFoundError,
        ServeRefusedError,
        ServiceUnavailableError,
        SessionClosedError,
        UnknownRunError,
        UnknownTaskTypeError,
    )
    from .polling import PollPolicy
    from .registry import ConnectorRegistry
    from .run import Run, Transition, WaitInterrupted
    from .server import serve
    from .session import AsyncSession, Session
    from .template import task_template
    from .transports import GrpcTransport, LocalTransport, MockTransport, Transport
    from .ui.progress import progress
