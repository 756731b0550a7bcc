"""Error types. Every message names the problem and what was expected."""

from __future__ import annotations

from typing import Iterable


class ConnectorNbError(Exception):
    """Base class of every error raised by connector_nb."""


class UnknownTaskTypeError(ConnectorNbError, LookupError):
    """No connector handles the requested task type (and version)."""

    def __init__(self, task_type: str, version: int, available: Iterable[str]) -> None:
        self.task_type = task_type
        self.version = version
        self.available = sorted(available)
        offered = ", ".join(self.available) or "none"
        super().__init__(
            f"no connector for task type {task_type!r} version {version}; registered: {offered}"
        )


class InputError(ConnectorNbError, ValueError):
    """Inputs do not match the task's interface (unknown, missing or wrongly typed)."""


class LiteralConversionError(InputError, TypeError):
    """A value cannot be converted to or from a flyteidl Literal."""


class MetadataError(ConnectorNbError, ValueError):
    """Resource metadata bytes could not be decoded into the connector's metadata type."""


class ConnectorCallError(ConnectorNbError):
    """A connector method raised. The original exception is kept on ``__cause__`` and ``original``."""

    def __init__(self, method: str, task_type: str, original: BaseException | None, detail: str = "") -> None:
        self.method = method
        self.task_type = task_type
        self.original = original
        if not detail and original is not None:
            detail = f"{type(original).__name__}: {original}"
        super().__init__(f"connector for {task_type!r} failed in {method}(): {detail}")


class NotSupportedError(ConnectorNbError, NotImplementedError):
    """The connector does not implement an optional method (metrics or logs)."""


class ServiceUnavailableError(ConnectorNbError, ConnectionError):
    """The connector service could not be reached."""


class PollingStoppedError(ConnectorNbError, RuntimeError):
    """Polling of a run ended without a terminal phase (too many consecutive ``get`` errors)."""


class EngineError(ConnectorNbError, RuntimeError):
    """Misuse of the engine loop, e.g. blocking on it from inside itself (which would deadlock)."""


class SessionClosedError(ConnectorNbError, RuntimeError):
    """The session was closed; create a new one."""
