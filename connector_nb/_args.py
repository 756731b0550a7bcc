"""Parsing of ``key=value`` arguments shared by the CLI and the magics."""

from __future__ import annotations

import json
from typing import Any, Iterable

from .errors import InputError


def parse_value(text: str) -> Any:
    """JSON where it parses (numbers, booleans, lists, objects, null), else the plain string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """``["seconds=2", "fail=true"]`` -> ``{"seconds": 2, "fail": True}``; a bad item is an InputError."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise InputError(f"expected key=value (e.g. seconds=2), got {item!r}")
        values[key.strip()] = parse_value(text)
    return values


def parse_json_object(text: str | None, what: str) -> dict[str, Any] | None:
    """A JSON object given on a command line, or None; anything else is an InputError naming ``what``."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise InputError(f"{what} must be a JSON object: {e}") from None
    if not isinstance(value, dict):
        raise InputError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value
