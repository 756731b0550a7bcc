"""PEM material for TLS, given as PEM text or a file path (shared by the gRPC client and server)."""

from __future__ import annotations

import os


def read_pem(value: str | bytes, what: str) -> bytes:
    """PEM bytes from PEM text or the path of a PEM file; a clear ValueError naming ``what`` otherwise."""
    if isinstance(value, bytes) and b"-----BEGIN" in value:
        return value
    if isinstance(value, str) and "-----BEGIN" in value:
        return value.encode()
    path = os.fsdecode(value)
    try:
        with open(os.path.expanduser(path), "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{what}: cannot read {path!r} ({e.strerror}); expected a PEM file path or PEM text") from None
