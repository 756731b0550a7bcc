"""Parsing of ``key=value`` arguments and bounded JSON, shared by the CLI, the magics and ResourceMeta."""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import functools
import json
import types
import typing
from typing import Any, Iterable, Mapping

from .errors import ConnectorNbError, InputError, MetadataError

#: Deepest nesting any parsed value may have: far below Python's recursion limit, so every later
#: recursive walk (literal conversion, reprs, Struct encoding) is safe.
MAX_DEPTH = 64
#: Most containers' children in one parsed value (also stops YAML alias "billion laughs" expansion).
MAX_NODES = 200_000
#: Largest text any parser here accepts.
MAX_TEXT = 8 * 1024 * 1024

_RAISE: Any = object()


def check_nesting(
    value: Any, what: str, error: type[ConnectorNbError] = InputError, *,
    max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES,
) -> None:
    """Raise ``error`` naming ``what`` when ``value`` nests deeper than ``max_depth`` or holds too many items.

    Iterative, so it is safe on any input; a self-referencing (YAML alias) value counts as too deep.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = list(item.values())
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > max_depth:
            raise error(f"{what}: nested deeper than {max_depth} levels")
        nodes += len(children)
        if nodes > max_nodes:
            raise error(f"{what}: more than {max_nodes} items")
        stack.extend((child, depth + 1) for child in children)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def loads_json(
    data: str | bytes, what: str, error: type[ConnectorNbError] = InputError, *, allow_nan: bool = True,
    not_json: Any = _RAISE,
) -> Any:
    """``json.loads`` that raises only ``error`` (naming ``what``), with bounded size and nesting.

    Text that is not JSON at all gives ``not_json`` when that is passed, else the error.
    """
    if not isinstance(data, (str, bytes, bytearray)):
        raise error(f"{what}: expected JSON text or bytes, got {type(data).__name__}")
    if len(data) > MAX_TEXT:
        raise error(f"{what}: {len(data)} bytes is more than the {MAX_TEXT} allowed")
    try:
        value = json.loads(data) if allow_nan else json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise error(f"{what}: nested deeper than {MAX_DEPTH} levels") from None
    except (UnicodeDecodeError, ValueError) as e:
        if not_json is not _RAISE:
            return not_json
        raise error(f"{what}: not JSON ({e}); got {data[:40]!r}") from None
    check_nesting(value, what, error)
    return value


def _fits(value: Any, hint: Any) -> tuple[bool, Any]:
    """Whether a decoded JSON value fits a type annotation, and the value to keep (an int widened to float)."""
    if hint is Any or isinstance(hint, (str, typing.TypeVar)):
        return True, value  # unresolvable or unconstrained: nothing to check
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            ok, kept = _fits(value, arg)
            if ok:
                return True, kept
        return False, value
    if origin is typing.Literal:
        return value in args, value
    if hint is type(None) or hint is None:
        return value is None, value
    if hint is float:
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        try:
            return is_number, float(value) if is_number else value
        except OverflowError:
            return False, value  # a huge int has no float: the wrong type, not a crash
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint in (str, bool):
        return isinstance(value, hint), value
    if (origin or hint) in (list, tuple, typing.Sequence, collections.abc.Sequence):
        if not isinstance(value, list):
            return False, value
        item = args[0] if origin is list and args else Any
        kept_items = [_fits(v, item) for v in value]
        return all(ok for ok, _ in kept_items), [v for _, v in kept_items]
    if (origin or hint) in (dict, typing.Mapping, collections.abc.Mapping):
        if not isinstance(value, dict):
            return False, value
        item = args[1] if len(args) == 2 else Any
        kept_map = {k: _fits(v, item) for k, v in value.items()}
        return all(ok for ok, _ in kept_map.values()), {k: v for k, (_, v) in kept_map.items()}
    return True, value  # a type JSON cannot express (a nested class): the connector checks it


def _hint_name(hint: Any) -> str:
    if isinstance(hint, type):
        return "None" if hint is type(None) else hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")


@functools.lru_cache(maxsize=256)
def _shape(cls: type) -> tuple[dict[str, dataclasses.Field[Any]], dict[str, Any]]:
    """A dataclass's init fields and resolved type hints, once per class (decode runs on every poll)."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an unresolvable annotation leaves that class unchecked, not broken
        hints = {}
    return fields, hints


def check_fields(cls: type, values: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``values`` checked against dataclass ``cls``'s fields: unknown, missing and wrongly typed ones are named."""
    if not dataclasses.is_dataclass(cls):
        return dict(values)
    fields, hints = _shape(cls)
    unknown = sorted(set(values) - set(fields))
    missing = [
        n for n, f in fields.items() if n not in values
        and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if unknown or missing:
        parts = ([f"unknown field(s) {', '.join(map(repr, unknown))}"] if unknown else []) + (
            [f"missing field(s) {', '.join(map(repr, missing))}"] if missing else [])
        raise MetadataError(f"{what}: {'; '.join(parts)}; expected fields: {', '.join(fields) or 'none'}")
    checked = {}
    for name, value in values.items():
        ok, kept = _fits(value, hints.get(name, Any))
        if not ok:
            raise MetadataError(
                f"{what}: field {name!r} must be {_hint_name(hints[name])}, got {type(value).__name__}"
            )
        checked[name] = kept
    return checked


def _non_none(py_type: Any) -> list[Any]:
    if typing.get_origin(py_type) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(py_type) if a is not type(None)]
    return [py_type]


def _proto_kind(lt: Any) -> str:
    """For a flyteidl LiteralType (duck-typed, so flyteidl is not imported here): 'text', 'json' or its scalar."""
    kind = lt.WhichOneof("type")
    if kind in ("blob", "structured_dataset_type"):
        return "text"
    if kind == "union_type":
        kinds = {_proto_kind(v) for v in lt.union_type.variants} - {"none"}
        return "text" if kinds == {"text"} else "json"
    if kind == "simple":
        # flyteidl SimpleType: NONE=0, INTEGER=1, FLOAT=2, STRING=3, BOOLEAN=4, DATETIME=5, DURATION=6.
        return {0: "none", 1: "int", 2: "float", 3: "text", 4: "bool", 5: "datetime"}.get(lt.simple, "json")
    return "json"


def _kind(py_type: Any) -> str:
    """How a typed ``key=value`` text is read: 'text', 'int', 'float', 'bool', 'datetime' or 'json'."""
    if hasattr(py_type, "WhichOneof"):
        return _proto_kind(py_type)
    options = _non_none(py_type)
    if len(options) != 1:
        return "json"
    only = options[0]
    if only is str or getattr(only, "__name__", "") in ("Blob", "StructuredDataset"):
        return "text"  # a Blob/StructuredDataset input takes a bare URI
    return {int: "int", float: "float", bool: "bool", dt.datetime: "datetime"}.get(only, "json")


def _typed_value(name: str, text: str, py_type: Any) -> Any:
    kind = _kind(py_type)
    if kind == "text":
        return text
    if kind == "datetime":
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            raise InputError(f"input {name!r}: expected an ISO datetime (e.g. 2024-05-01), got {text!r}") from None
    value = parse_value(text, name)
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
    }.get(kind, True)
    optional = value is None and type(None) in typing.get_args(py_type)
    if not ok and not optional:
        raise InputError(f"input {name!r}: expected {kind}, got {text!r}")
    return value


def parse_value(text: str, name: str = "value") -> Any:
    """JSON where it parses (numbers, booleans, lists, objects, null), else the plain string.

    Text that is JSON but nested too deeply (or too large) is an InputError naming ``name``.
    """
    return loads_json(text, f"input {name!r}", not_json=text)


def parse_assignments(items: Iterable[str], types: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``["seconds=2", "fail=true"]`` -> ``{"seconds": 2, "fail": True}``; a bad item is an InputError.

    With ``types`` (input name -> Python type or LiteralType), a value is read as its declared type: a ``str``
    input keeps its text (``command=true`` is ``"true"``), a number or bool must be one, JSON is read only for
    collections and untyped inputs.
    """
    values: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, str):
            raise InputError(f"expected key=value strings, got {type(item).__name__}")
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise InputError(f"expected key=value (e.g. seconds=2), got {item[:80]!r}")
        if types is not None and key in types:
            values[key] = _typed_value(key, text, types[key])
        else:
            values[key] = parse_value(text, key)
    return values


def declared_input_types(registry: Any, task: str, version: int = 0) -> dict[str, Any] | None:
    """An in-process connector's declared input types (for ``parse_assignments``); None when unknown.

    None for a remote target (``registry`` None: no interface published) or an unknown task type, which
    ``launch`` then reports itself.
    """
    if registry is None:
        return None
    try:
        return dict(registry.get_connector(task, version).input_types)
    except ConnectorNbError:
        return None


def parse_json_object(text: str | None, what: str) -> dict[str, Any] | None:
    """A JSON object given on a command line, or None; anything else is an InputError naming ``what``."""
    if text is None:
        return None
    value = loads_json(text, f"{what} must be a JSON object")
    if not isinstance(value, dict):
        raise InputError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value
