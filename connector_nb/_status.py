"""The one table between our errors and gRPC status codes, used by the server (and, inversely, the client).

Codes are kept as ``grpc.StatusCode`` *names* so that this module loads without grpc.
"""

from __future__ import annotations

import os

from .errors import (
    AuthError,
    CallTimeoutError,
    ConnectorCallError,
    ConnectorNbError,
    InputError,
    LimitExceededError,
    MetadataError,
    NotSupportedError,
    ServiceUnavailableError,
    UnknownRunError,
    UnknownTaskTypeError,
)

# grpc core otherwise prints INFO lines ("Got goaway ...") into the notebook; read when grpc is first
# imported, so every module that imports grpc imports this one first. A value the user set wins.
#: The GRPC_VERBOSITY default (a value the user set wins).
QUIET = "ERROR"
os.environ.setdefault("GRPC_VERBOSITY", QUIET)

#: error class -> status code name; the first class an error is an instance of decides (most specific first).
ERROR_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (UnknownTaskTypeError, "NOT_FOUND"),
    (UnknownRunError, "NOT_FOUND"),
    (MetadataError, "INVALID_ARGUMENT"),
    (InputError, "INVALID_ARGUMENT"),
    (NotSupportedError, "UNIMPLEMENTED"),
    (CallTimeoutError, "DEADLINE_EXCEEDED"),
    (AuthError, "UNAUTHENTICATED"),
    (LimitExceededError, "RESOURCE_EXHAUSTED"),
    (ServiceUnavailableError, "UNAVAILABLE"),
    (ConnectorCallError, "INTERNAL"),
    (MemoryError, "RESOURCE_EXHAUSTED"),
)

#: status code name -> the error class a client raises for it (the inverse of :data:`ERROR_CODES`).
CODE_ERRORS: dict[str, type[ConnectorNbError]] = {
    "NOT_FOUND": UnknownTaskTypeError,
    "INVALID_ARGUMENT": InputError,
    "UNIMPLEMENTED": NotSupportedError,
    "DEADLINE_EXCEEDED": CallTimeoutError,
    "UNAUTHENTICATED": AuthError,
    "PERMISSION_DENIED": AuthError,
    "RESOURCE_EXHAUSTED": LimitExceededError,
    "UNAVAILABLE": ServiceUnavailableError,
    "INTERNAL": ConnectorCallError,
    "UNKNOWN": ConnectorCallError,
}


def code_name(error: BaseException) -> str:
    """The status code name for ``error``; INTERNAL for anything the table does not know (a server bug)."""
    for cls, name in ERROR_CODES:
        if isinstance(error, cls):
            return name
    return "INTERNAL"


def error_class(code: str) -> type[ConnectorNbError]:
    """The error class for a status code name; :class:`ConnectorNbError` for codes without one."""
    return CODE_ERRORS.get(code, ConnectorNbError)


def detail(error: BaseException) -> str:
    """The status detail for ``error``: a connector's failure as ``ExcType: message``, without our prefix."""
    if isinstance(error, ConnectorCallError):
        if error.original is not None:
            return f"{type(error.original).__name__}: {error.original}"
        return str(error).partition(f"failed in {error.method}(): ")[2] or str(error)
    if isinstance(error, ConnectorNbError):
        return str(error)
    return f"{type(error).__name__}: {error}"


__all__ = ["CODE_ERRORS", "ERROR_CODES", "code_name", "detail", "error_class"]
