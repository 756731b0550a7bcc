"""Python values <-> flyteidl ``Literal``/``LiteralMap``, and Python types -> ``LiteralType``.

Only the types a notebook user types by hand are supported; everything else fails with a message that names
the field, the offending type and the supported ones, so a bad input never reaches a connector.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from flyteidl.core import literals_pb2, types_pb2
from google.protobuf import json_format, struct_pb2

from .errors import InputError, LiteralConversionError
from .secrets import MASK, is_secret_name

if TYPE_CHECKING:
    import pandas

_S = types_pb2.SimpleType
_SUPPORTED = "int, float, str, bool, datetime, timedelta, None, list, dict, Blob or StructuredDataset"
_SIMPLE_TYPES: dict[Any, int] = {
    int: _S.INTEGER, float: _S.FLOAT, str: _S.STRING, bool: _S.BOOLEAN,
    dt.datetime: _S.DATETIME, dt.timedelta: _S.DURATION, type(None): _S.NONE, Any: _S.STRUCT, dict: _S.STRUCT,
}
_SIMPLE_NAMES: dict[int, str] = {
    _S.INTEGER: "int", _S.FLOAT: "float", _S.STRING: "str", _S.BOOLEAN: "bool", _S.DATETIME: "datetime",
    _S.DURATION: "timedelta", _S.NONE: "None", _S.STRUCT: "json", _S.BINARY: "bytes", _S.ERROR: "error",
}


@dataclass(frozen=True)
class Blob:
    """A file (or, with ``multipart``, a directory of files) referenced by URI."""

    uri: str
    format: str = ""
    multipart: bool = False


@dataclass(frozen=True)
class StructuredDataset:
    """A table referenced by URI; ``load_dataframe`` reads it into pandas."""

    uri: str
    format: str = ""


# ---------------------------------------------------------------------------------------------- types


def _py_name(py_type: Any) -> str:
    # ``list[int]`` passes isinstance(..., type) on 3.10, so check for generic aliases first.
    if typing.get_origin(py_type) is None and isinstance(py_type, type):
        return "None" if py_type is type(None) else py_type.__name__
    return str(py_type).replace("typing.", "").replace("NoneType", "None")


def _unsupported(py_type: Any, field: str, why: str = "") -> LiteralConversionError:
    reason = f" ({why})" if why else ""
    return LiteralConversionError(
        f"input {field!r}: unsupported type {_py_name(py_type)}{reason}; expected {_SUPPORTED}"
    )


def _is_dataframe_type(py_type: Any) -> bool:
    # Checked by name so that describing a DataFrame input never imports pandas.
    return (
        isinstance(py_type, type)
        and py_type.__name__ == "DataFrame"
        and py_type.__module__.split(".")[0] == "pandas"
    )


def _tagged(lt: types_pb2.LiteralType) -> types_pb2.LiteralType:
    # Flyte picks a union variant by its structure tag, so every variant carries one.
    tagged = types_pb2.LiteralType()
    tagged.CopyFrom(lt)
    tagged.structure.tag = type_name(lt)
    return tagged


def literal_type(py_type: Any, *, field: str = "value") -> types_pb2.LiteralType:
    """The flyteidl ``LiteralType`` for a Python type annotation."""
    if isinstance(py_type, types_pb2.LiteralType):
        return py_type
    origin, args = typing.get_origin(py_type), typing.get_args(py_type)
    if origin in (typing.Union, types.UnionType):
        return types_pb2.LiteralType(
            union_type=types_pb2.UnionType(variants=[_tagged(literal_type(a, field=field)) for a in args])
        )
    if origin is list:
        item = args[0] if args else Any
        return types_pb2.LiteralType(collection_type=literal_type(item, field=field))
    if origin is dict:
        key, value = args if len(args) == 2 else (str, Any)
        if key is not str:
            raise _unsupported(py_type, field, "dict keys must be str")
        if value is Any:  # dict[str, Any] is arbitrary JSON, not a map of one type
            return types_pb2.LiteralType(simple=_S.STRUCT)
        return types_pb2.LiteralType(map_value_type=literal_type(value, field=field))
    if origin is not None:
        raise _unsupported(py_type, field)
    if py_type in _SIMPLE_TYPES:
        return types_pb2.LiteralType(simple=_SIMPLE_TYPES[py_type])
    if py_type is list:
        return types_pb2.LiteralType(collection_type=types_pb2.LiteralType(simple=_S.STRUCT))
    if py_type is Blob:
        return types_pb2.LiteralType(blob=types_pb2.BlobType(dimensionality=types_pb2.BlobType.SINGLE))
    if py_type is StructuredDataset or _is_dataframe_type(py_type):
        return types_pb2.LiteralType(structured_dataset_type=types_pb2.StructuredDatasetType())
    raise _unsupported(py_type, field)


def type_name(lt: types_pb2.LiteralType) -> str:
    """A short readable name of a ``LiteralType`` for messages and form labels."""
    kind = lt.WhichOneof("type")
    if kind == "simple":
        return _SIMPLE_NAMES.get(lt.simple, "unknown")
    if kind == "collection_type":
        return f"list[{type_name(lt.collection_type)}]"
    if kind == "map_value_type":
        return f"dict[str, {type_name(lt.map_value_type)}]"
    if kind == "union_type":
        return " | ".join(type_name(v) for v in lt.union_type.variants)
    if kind == "blob":
        return "blob"
    if kind == "structured_dataset_type":
        fmt = lt.structured_dataset_type.format
        return f"structured_dataset({fmt})" if fmt else "structured_dataset"
    return kind or "unknown"


def _common_type(found: list[Any]) -> Any:
    unique = list(dict.fromkeys(found))
    if list[Any] in unique and any(typing.get_origin(t) is list for t in unique if t != list[Any]):
        unique.remove(list[Any])  # an empty list fits any list type
    if len(unique) == 1:
        return unique[0]
    if set(unique) == {int, float}:  # mixed numbers widen instead of falling back to JSON
        return float
    if type(None) in unique:
        rest = _common_type([t for t in unique if t is not type(None)])
        return Any if rest is Any else typing.Optional[rest]  # noqa: UP045 - a runtime type object
    return Any


def infer_type(value: Any) -> Any:
    """A Python type describing ``value``, for targets that publish no interface."""
    return _infer(value, "value")


def _infer(value: Any, field: str) -> Any:
    if isinstance(value, (bool, int, float, str, dt.datetime, dt.timedelta, Blob, StructuredDataset)):
        return type(value)  # bool is tested by type, so True never becomes an int
    if value is None:
        return type(None)
    if isinstance(value, (list, tuple)):
        items = [_infer(v, f"{field}[{i}]") for i, v in enumerate(value)]
        common = _common_type(items) if items else Any
        if common is Any and not all(isinstance(v, Mapping) for v in value):
            # A list of JSON objects can be generic; a list of mixed scalars has no Flyte type.
            names = ", ".join(dict.fromkeys(_py_name(t) for t in items))
            raise LiteralConversionError(
                f"input {field!r}: list elements have different types ({names}); declare the input's type"
            )
        return list[common]
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise LiteralConversionError(f"input {field!r}: dict keys must be str, got {type(bad[0]).__name__}")
        if not value:
            return dict
        try:
            common = _common_type([_infer(v, f"{field}[{k!r}]") for k, v in value.items()])
        except LiteralConversionError:
            return dict  # untypeable values (e.g. mixed lists) are still fine as JSON
        return dict if common is Any else dict[str, common]
    raise LiteralConversionError(
        f"input {field!r}: cannot convert a {type(value).__name__}; expected {_SUPPORTED}"
    )


# ----------------------------------------------------------------------------------- values -> literal


def _show(value: Any, field: str = "") -> str:
    if is_secret_name(field.split("[")[0]):
        return f"{type(value).__name__} {MASK}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _mismatch(value: Any, lt: types_pb2.LiteralType, field: str) -> LiteralConversionError:
    return LiteralConversionError(f"input {field!r}: expected {type_name(lt)}, got {_show(value, field)}")


def _scalar(**kwargs: Any) -> literals_pb2.Literal:
    return literals_pb2.Literal(scalar=literals_pb2.Scalar(**kwargs))


def _primitive(value: Any, simple: int) -> literals_pb2.Primitive | None:
    """The Primitive for ``value`` if it fits ``simple``, else None."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if simple == _S.INTEGER and is_int:
        return literals_pb2.Primitive(integer=value)
    if simple == _S.FLOAT and (is_int or isinstance(value, float)):
        return literals_pb2.Primitive(float_value=float(value))
    if simple == _S.STRING and isinstance(value, str):
        return literals_pb2.Primitive(string_value=value)
    if simple == _S.BOOLEAN and isinstance(value, bool):
        return literals_pb2.Primitive(boolean=value)
    if simple == _S.DATETIME and isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)  # naive means UTC
        prim = literals_pb2.Primitive()
        prim.datetime.FromDatetime(aware.astimezone(dt.timezone.utc).replace(tzinfo=None))
        return prim
    if simple == _S.DURATION and isinstance(value, dt.timedelta):
        prim = literals_pb2.Primitive()
        prim.duration.FromTimedelta(value)
        return prim
    return None


def _simple_literal(value: Any, lt: types_pb2.LiteralType, field: str) -> literals_pb2.Literal:
    if lt.simple == _S.NONE and value is None:
        return _scalar(none_type=literals_pb2.Void())
    if lt.simple == _S.STRUCT and isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        struct = struct_pb2.Struct()
        try:
            if bad:
                raise ValueError(f"dict keys must be str, got {type(bad[0]).__name__}")
            json_format.ParseDict(dict(value), struct)
        except (ValueError, TypeError, json_format.ParseError) as e:
            raise LiteralConversionError(f"input {field!r}: value is not JSON: {e}") from None
        return _scalar(generic=struct)
    prim = _primitive(value, lt.simple)
    if prim is None:
        raise _mismatch(value, lt, field)
    return _scalar(primitive=prim)


def _union_literal(value: Any, lt: types_pb2.LiteralType, field: str) -> literals_pb2.Literal:
    # The first variant that accepts the value wins, as in flytekit (so declare narrow types first).
    for variant in lt.union_type.variants:
        try:
            inner = _to_literal(value, variant, field)
        except InputError:
            continue
        return _scalar(union=literals_pb2.Union(value=inner, type=variant))
    raise _mismatch(value, lt, field)


def _blob_literal(value: Any, lt: types_pb2.LiteralType, field: str) -> literals_pb2.Literal:
    if isinstance(value, str):  # a bare URI, as typed into a form
        value = Blob(value, lt.blob.format, lt.blob.dimensionality == types_pb2.BlobType.MULTIPART)
    if not isinstance(value, Blob):
        raise _mismatch(value, lt, field)
    dim = types_pb2.BlobType.MULTIPART if value.multipart else types_pb2.BlobType.SINGLE
    meta = literals_pb2.BlobMetadata(type=types_pb2.BlobType(format=value.format, dimensionality=dim))
    return _scalar(blob=literals_pb2.Blob(metadata=meta, uri=value.uri))


def _dataset_literal(value: Any, lt: types_pb2.LiteralType, field: str) -> literals_pb2.Literal:
    if isinstance(value, str):
        value = StructuredDataset(value, lt.structured_dataset_type.format)
    if not isinstance(value, StructuredDataset):
        raise _mismatch(value, lt, field)
    sd_type = types_pb2.StructuredDatasetType(format=value.format or lt.structured_dataset_type.format)
    meta = literals_pb2.StructuredDatasetMetadata(structured_dataset_type=sd_type)
    return _scalar(structured_dataset=literals_pb2.StructuredDataset(uri=value.uri, metadata=meta))


def _to_literal(value: Any, lt: types_pb2.LiteralType, field: str) -> literals_pb2.Literal:
    kind = lt.WhichOneof("type")
    if kind is None:  # an empty type says nothing: describe the value itself
        return _to_literal(value, literal_type(_infer(value, field), field=field), field)
    if kind == "simple":
        return _simple_literal(value, lt, field)
    if kind == "union_type":
        return _union_literal(value, lt, field)
    if kind == "collection_type":
        if not isinstance(value, (list, tuple)):
            raise _mismatch(value, lt, field)
        items = [_to_literal(v, lt.collection_type, f"{field}[{i}]") for i, v in enumerate(value)]
        return literals_pb2.Literal(collection=literals_pb2.LiteralCollection(literals=items))
    if kind == "map_value_type":
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise _mismatch(value, lt, field)
        entries = {k: _to_literal(v, lt.map_value_type, f"{field}[{k!r}]") for k, v in value.items()}
        return literals_pb2.Literal(map=literals_pb2.LiteralMap(literals=entries))
    if kind == "blob":
        return _blob_literal(value, lt, field)
    if kind == "structured_dataset_type":
        return _dataset_literal(value, lt, field)
    raise LiteralConversionError(f"input {field!r}: unsupported literal type {kind}; expected {_SUPPORTED}")


def to_literal(
    value: Any, lt: types_pb2.LiteralType | None = None, *, field: str = "value"
) -> literals_pb2.Literal:
    """Convert ``value`` to a Literal of type ``lt`` (inferred from the value when None), checking its type."""
    return _to_literal(value, lt if lt is not None else types_pb2.LiteralType(), field)


def to_literal_map(
    values: Mapping[str, Any], types: Mapping[str, types_pb2.LiteralType | Any] | None = None
) -> literals_pb2.LiteralMap:
    """Convert named values; ``types`` holds LiteralTypes or Python types, missing names are inferred."""
    types = types or {}
    literals = {
        name: to_literal(value, literal_type(types[name], field=name) if name in types else None, field=name)
        for name, value in values.items()
    }
    return literals_pb2.LiteralMap(literals=literals)


# ----------------------------------------------------------------------------------- literal -> values


def _json_ints(value: Any) -> Any:
    # Struct stores every number as a double; give whole numbers back as ints so {"n": 3} round-trips.
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_json_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_ints(v) for k, v in value.items()}
    return value


def _decode_scalar(scalar: literals_pb2.Scalar, field: str) -> Any:
    kind = scalar.WhichOneof("value")
    if kind == "primitive":
        prim = scalar.primitive
        which = prim.WhichOneof("value")
        if which == "datetime":
            return prim.datetime.ToDatetime(tzinfo=dt.timezone.utc)
        if which == "duration":
            return prim.duration.ToTimedelta()
        return getattr(prim, which) if which else None
    if kind == "none_type":
        return None
    if kind == "generic":
        return _json_ints(json_format.MessageToDict(scalar.generic))
    if kind == "union":
        return _decode(scalar.union.value, field)
    if kind == "blob":
        multipart = scalar.blob.metadata.type.dimensionality == types_pb2.BlobType.MULTIPART
        return Blob(scalar.blob.uri, scalar.blob.metadata.type.format, multipart)
    if kind == "structured_dataset":
        sd = scalar.structured_dataset
        return StructuredDataset(sd.uri, sd.metadata.structured_dataset_type.format)
    if kind == "binary":
        return scalar.binary.value
    raise LiteralConversionError(f"value {field!r}: unsupported literal scalar {kind}; expected {_SUPPORTED}")


def _decode(literal: literals_pb2.Literal, field: str) -> Any:
    kind = literal.WhichOneof("value")
    if kind == "scalar":
        return _decode_scalar(literal.scalar, field)
    if kind == "collection":
        return [_decode(v, f"{field}[{i}]") for i, v in enumerate(literal.collection.literals)]
    if kind == "map":
        return {k: _decode(v, f"{field}[{k!r}]") for k, v in literal.map.literals.items()}
    raise LiteralConversionError(f"value {field!r}: unsupported literal {kind}; expected a scalar, list or map")


def to_python(literal: literals_pb2.Literal, lt: types_pb2.LiteralType | None = None, *, field: str = "value") -> Any:
    """Convert a Literal back to Python; blobs and datasets come back as ``Blob``/``StructuredDataset``."""
    value = _decode(literal, field)
    if lt is None or lt.WhichOneof("type") is None:
        return value
    # Re-encoding against the declared type both validates and applies to_literal's coercions (int -> float).
    return _decode(_to_literal(value, lt, field), field)


def to_python_dict(
    lm: literals_pb2.LiteralMap, types: Mapping[str, types_pb2.LiteralType] | None = None
) -> dict[str, Any]:
    """Convert every entry of a LiteralMap, checking those named in ``types``."""
    types = types or {}
    return {name: to_python(lit, types.get(name), field=name) for name, lit in lm.literals.items()}


# ------------------------------------------------------------------------------------------- pandas


def _local_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path) if parsed.scheme else uri)
    raise InputError(f"cannot read {uri!r}: only local paths and file:// URIs are supported")


def load_dataframe(sd: StructuredDataset) -> pandas.DataFrame:
    """Read a local structured dataset (a file, or a directory of part files) into a pandas DataFrame."""
    import pandas as pd  # lazy: pandas is slow to import and only needed here

    readers: dict[str, Any] = {
        "csv": pd.read_csv, "parquet": pd.read_parquet, "json": pd.read_json,
        "jsonl": lambda p: pd.read_json(p, lines=True),
    }
    reader = readers.get(sd.format.lower())
    if reader is None:
        raise InputError(
            f"cannot read structured dataset {sd.uri!r}: unknown format {sd.format!r}; "
            f"expected one of {', '.join(readers)}"
        )
    path = _local_path(sd.uri)
    if not path.exists():
        raise InputError(f"cannot read structured dataset {sd.uri!r}: {path} does not exist")
    if not path.is_dir():
        return reader(path)
    # A directory holds part files (as Flyte writes them); hidden files like _SUCCESS markers are skipped.
    parts = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    if not parts:
        raise InputError(f"cannot read structured dataset {sd.uri!r}: directory {path} has no files")
    return pd.concat([reader(p) for p in parts], ignore_index=True)
