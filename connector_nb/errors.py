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


class CreateOutcomeUnknownError(ConnectorNbError):
    """``create`` may have reached the connector, but no answer came back: the job may exist.

    It is never re-sent (that could start the job twice). The run stays findable under ``run_id``:
    ``session.recover()`` lists it and ``session.reattach(run_id)`` or the connector's own console tells more.
    """

    def __init__(self, run_id: str, task_type: str, detail: str) -> None:
        self.run_id = run_id
        self.task_type = task_type
        super().__init__(
            f"create() for {task_type!r} may have reached the connector but gave no answer ({detail}); "
            f"the job may exist. It was not re-sent. Run id {run_id!r} (its execution name) is journaled: "
            "see session.recover()"
        )


class CallTimeoutError(ConnectorNbError, TimeoutError):
    """A connector call did not finish within its deadline (``PollPolicy.call_timeout`` / ``create_timeout``)."""

    def __init__(self, method: str, task_type: str, timeout: float) -> None:
        self.method = method
        self.task_type = task_type
        self.timeout = timeout
        super().__init__(f"connector for {task_type!r}: {method}() did not return within {timeout:g} s")


class UnknownRunError(ConnectorNbError, LookupError):
    """No run with this id in the session or its journal; the message lists recent ids."""


class AuthError(ConnectorNbError, PermissionError):
    """The connector service refused the call's credentials (UNAUTHENTICATED / PERMISSION_DENIED)."""


class SecretNotFoundError(ConnectorNbError, LookupError):
    """A secret a connector declares is neither in the environment nor in the ``.env`` file."""


class JournalError(ConnectorNbError):
    """The run journal cannot be used: closed, a flush that did not finish, or a file it cannot open."""


class JournalVersionError(JournalError):
    """The journal file was written by a newer connector_nb (a schema version this one does not know)."""
