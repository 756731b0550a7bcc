"""Secret masking: values of secret-looking names never reach a repr, widget, log line, error or journal."""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

MASK = "••••"
# Over-masking a harmless name costs little; leaking one secret costs a lot.
_SECRET_NAME = re.compile(
    r"passw|pwd|secret|token|credential|auth|api_?key|private_?key|(^|[_-])key([_-]|$)", re.IGNORECASE
)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def redact(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with the values of secret-named keys (at any depth) replaced by a mask."""
    return {k: MASK if is_secret_name(str(k)) else _redact_value(v) for k, v in values.items()}


def _redact_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return redact(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_redact_value(v) for v in value)
    return value


def secret_values(values: Mapping[str, Any]) -> list[str]:
    """The string forms of secret-named values (at any depth), longest first, for masking in text."""
    found: list[str] = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            found += secret_values(value)
        elif is_secret_name(str(key)) and value not in (None, ""):
            found.append(str(value))
    return sorted(set(found), key=len, reverse=True)


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret in ``text`` (e.g. an error message echoing an input)."""
    for secret in secrets:
        if len(secret) >= 3:  # masking one or two characters would mangle the text, not protect anything
            text = text.replace(secret, MASK)
    return text


def mask_error(error: BaseException, values: Mapping[str, Any]) -> BaseException:
    """Mask secret input values in an exception's message and its causes, in place; returns it."""
    secrets = secret_values(values)
    seen: BaseException | None = error
    while secrets and seen is not None:
        seen.args = tuple(mask_text(a, secrets) if isinstance(a, str) else a for a in seen.args)
        seen = seen.__cause__ or seen.__context__
    return error
