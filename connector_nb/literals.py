"""Python values <-> flyteidl ``Literal``/``LiteralMap``, and Python types -> ``LiteralType``.

Only the types a notebook user types by hand are supported; everything else fails with a message that names
the field, the offending type and the supported ones, so a bad input never reaches a connector.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import types
import typing
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from flyteidl.core import literals_pb2, types_pb2
from google.protobuf import json_format

from ._args import MAX_DEPTH, check_nesting
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


#: ``Binary.tag`` of msgpack-encoded values, as flytekit and Flyte 2 write dicts (STRUCT type).
MSGPACK_TAG = "msgpack"
#: ``Literal.metadata`` key marking a datetime that was naive (Flyte stores every datetime as UTC).
NAIVE_DATETIME = "connector_nb.naive_datetime"
_INT64 = (-(2**63), 2**63 - 1)
#: Scalar types in the order union variants are tried, narrowest first (so 1 stays an int next to 2.5).
_SCALAR_ORDER: tuple[Any, ...] = ()  # filled in below, once Blob and StructuredDataset exist
#: What the values being converted are ("input", "output" or "value"), for error messages.
_ROLE: ContextVar[str] = ContextVar("connector_nb_literal_role", default="input")


class _Unrepresentable(LiteralConversionError):
    """The value has the variant's type but cannot be represented (int past int64, lone surrogate, date range):
    a union must not fall through to a wider variant and silently change the value."""


@contextlib.contextmanager
def _role(role: str | None) -> Iterator[None]:
    if role is None:
        yield
        return
    token = _ROLE.set(role)
    try:
        yield
    finally:
        _ROLE.reset(token)


def _label(field: str) -> str:
    return f"{_ROLE.get()} {field!r}"


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


_SCALAR_ORDER = (bool, int, float, str, dt.datetime, dt.timedelta, Blob, StructuredDataset)

# ---------------------------------------------------------------------------------------------- types


def _py_name(py_type: Any) -> str:
    # ``list[int]`` passes isinstance(..., type) on 3.10, so check for generic aliases first.
    if typing.get_origin(py_type) is None and isinstance(py_type, type):
        return "None" if py_type is type(None) else py_type.__name__
    return str(py_type).replace("typing.", "").replace("NoneType", "None")


def _unsupported(py_type: Any, field: str, why: str = "") -> LiteralConversionError:
    reason = f" ({why})" if why else ""
    return LiteralConversionError(
        f"{_label(field)}: unsupported type {_py_name(py_type)}{reason}; expected {_SUPPORTED}"
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
    rest = [t for t in unique if t is not type(None)]
    none = [type(None)] if len(rest) < len(unique) else []
    if all(t in _SCALAR_ORDER for t in rest):
        # Mixed scalars become a union, narrowest first, so each element keeps its own type ([1, 2.5]).
        return typing.Union[tuple(sorted(rest, key=_SCALAR_ORDER.index) + none)]  # noqa: UP007
    if none:
        inner = _common_type(rest)
        return Any if inner is Any else typing.Optional[inner]  # noqa: UP045 - a runtime type object
    return Any


def _is_mixed(py_type: Any) -> bool:
    """A union of two or more non-None types (as ``_common_type`` builds for mixed scalars)."""
    if typing.get_origin(py_type) is not typing.Union:
        return False
    return len([a for a in typing.get_args(py_type) if a is not type(None)]) > 1


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
            # A list of JSON objects can be generic; a list mixing scalars and collections has no Flyte type.
            names = ", ".join(dict.fromkeys(_py_name(t) for t in items))
            raise LiteralConversionError(
                f"{_label(field)}: list elements have different types ({names}); declare the input's type"
            )
        return types.GenericAlias(list, (common,))
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise LiteralConversionError(f"{_label(field)}: dict keys must be str, got {type(bad[0]).__name__}")
        if not value:
            return dict
        try:
            common = _common_type([_infer(v, f"{field}[{k!r}]") for k, v in value.items()])
        except LiteralConversionError:
            return dict  # untypeable values (e.g. mixed lists) are still fine as msgpack
        return dict if common is Any or _is_mixed(common) else types.GenericAlias(dict, (str, common))
    raise LiteralConversionError(
        f"{_label(field)}: cannot convert a {type(value).__name__}; expected {_SUPPORTED}"
    )


# ----------------------------------------------------------------------------------- values -> literal


def _show(value: Any, field: str = "") -> str:
    if is_secret_name(field.split("[")[0]):
        return f"{type(value).__name__} {MASK}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _mismatch(value: Any, lt: types_pb2.LiteralType, field: str) -> LiteralConversionError:
    return LiteralConversionError(f"{_label(field)}: expected {type_name(lt)}, got {_show(value, field)}")


def _scalar(**kwargs: Any) -> literals_pb2.Literal:
    return literals_pb2.Literal(scalar=literals_pb2.Scalar(**kwargs))


def _text(value: str, field: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Unrepresentable(f"{_label(field)}: str is not valid Unicode (a lone surrogate)") from None
    return value


def _datetime(value: dt.datetime, field: str) -> literals_pb2.Primitive:
    """A datetime as a UTC Timestamp (naive means UTC); out-of-range values are a named error."""
    try:
        utc = value.astimezone(dt.timezone.utc).replace(tzinfo=None) if value.tzinfo else value
        prim = literals_pb2.Primitive()
        prim.datetime.FromDatetime(utc)
    except (OverflowError, ValueError) as e:
        raise _Unrepresentable(f"{_label(field)}: datetime {value.isoformat()} is out of range: {e}") from None
    return prim


def _duration(value: dt.timedelta, field: str) -> literals_pb2.Primitive:
    try:
        prim = literals_pb2.Primitive()
        prim.duration.FromTimedelta(value)
    except (OverflowError, ValueError) as e:
        raise _Unrepresentable(f"{_label(field)}: timedelta {value} is out of range: {e}") from None
    return prim


def _primitive(value: Any, simple: int, field: str) -> literals_pb2.Primitive | None:
    """The Primitive for ``value`` if it fits ``simple``, else None."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if simple == _S.INTEGER and is_int:
        if not _INT64[0] <= value <= _INT64[1]:
            raise _Unrepresentable(
                f"{_label(field)}: int {value if abs(value) < 10**30 else '(huge)'} does not fit in int64"
            )
        return literals_pb2.Primitive(integer=value)
    if simple == _S.FLOAT and (is_int or isinstance(value, float)):
        try:
            return literals_pb2.Primitive(float_value=float(value))
        except OverflowError:
            raise LiteralConversionError(f"{_label(field)}: int is too large for a float") from None
    if simple == _S.STRING and isinstance(value, str):
        return literals_pb2.Primitive(string_value=_text(value, field))
    if simple == _S.BOOLEAN and isinstance(value, bool):
        return literals_pb2.Primitive(boolean=value)
    if simple == _S.DATETIME and isinstance(value, dt.datetime):
        return _datetime(value, field)
    if simple == _S.DURATION and isinstance(value, dt.timedelta):
        return _duration(value, field)
    return None


def _msgpack_literal(value: Mapping[Any, Any], field: str) -> literals_pb2.Literal:
    """A dict as flytekit and Flyte 2 send it: msgpack bytes in a ``Binary`` tagged "msgpack"."""
    import msgpack

    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise LiteralConversionError(f"{_label(field)}: dict keys must be str, got {type(bad[0]).__name__}")
    check_nesting(value, _label(field), LiteralConversionError)

    def reject(obj: Any) -> Any:
        raise TypeError(f"cannot encode a {type(obj).__name__}")

    try:
        packed = msgpack.packb(dict(value), use_bin_type=True, default=reject)
    except (TypeError, ValueError, OverflowError, UnicodeEncodeError) as e:
        raise LiteralConversionError(f"{_label(field)}: value cannot be encoded (msgpack): {e}") from None
    return _scalar(binary=literals_pb2.Binary(value=packed, tag=MSGPACK_TAG))


def _simple_literal(value: Any, lt: types_pb2.LiteralType, field: str) -> literals_pb2.Literal:
    if lt.simple == _S.NONE and value is None:
        return _scalar(none_type=literals_pb2.Void())
    if lt.simple == _S.STRUCT and isinstance(value, Mapping):
        return _msgpack_literal(value, field)
    prim = _primitive(value, lt.simple, field)
    if prim is None:
        raise _mismatch(value, lt, field)
    literal = _scalar(primitive=prim)
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        literal.metadata[NAIVE_DATETIME] = "true"  # so it comes back naive, as it went in
    return literal


def _union_literal(value: Any, lt: types_pb2.LiteralType, field: str) -> literals_pb2.Literal:
    # The first variant that accepts the value wins, as in flytekit (so declare narrow types first).
    for variant in lt.union_type.variants:
        try:
            inner = _to_literal(value, variant, field)
        except _Unrepresentable:
            raise
        except InputError:
            continue
        return _scalar(union=literals_pb2.Union(value=inner, type=variant))
    raise _mismatch(value, lt, field)


def _blob_literal(value: Any, lt: types_pb2.LiteralType, field: str) -> literals_pb2.Literal:
    if isinstance(value, str):  # a bare URI, as typed into a form
        value = Blob(value, lt.blob.format, lt.blob.dimensionality == types_pb2.BlobType.MULTIPART)
    if not isinstance(value, Blob) or not isinstance(value.uri, str) or not isinstance(value.format, str):
        raise _mismatch(value, lt, field)
    _text(value.uri + value.format, field)
    dim = types_pb2.BlobType.MULTIPART if value.multipart else types_pb2.BlobType.SINGLE
    meta = literals_pb2.BlobMetadata(type=types_pb2.BlobType(format=value.format, dimensionality=dim))
    return _scalar(blob=literals_pb2.Blob(metadata=meta, uri=value.uri))


def _dataset_literal(value: Any, lt: types_pb2.LiteralType, field: str) -> literals_pb2.Literal:
    if isinstance(value, str):
        value = StructuredDataset(value, lt.structured_dataset_type.format)
    if not isinstance(value, StructuredDataset) or not isinstance(value.uri, str) or not isinstance(value.format, str):
        raise _mismatch(value, lt, field)
    _text(value.uri + value.format, field)
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
        entries = {_text(k, field): _to_literal(v, lt.map_value_type, f"{field}[{k!r}]") for k, v in value.items()}
        return literals_pb2.Literal(map=literals_pb2.LiteralMap(literals=entries))
    if kind == "blob":
        return _blob_literal(value, lt, field)
    if kind == "structured_dataset_type":
        return _dataset_literal(value, lt, field)
    raise LiteralConversionError(f"{_label(field)}: unsupported literal type {kind}; expected {_SUPPORTED}")


def to_literal(
    value: Any, lt: types_pb2.LiteralType | None = None, *, field: str = "value", role: str | None = None
) -> literals_pb2.Literal:
    """Convert ``value`` to a Literal of type ``lt`` (inferred from the value when None), checking its type.

    ``role`` ("input", "output") names what the value is in error messages; the default is "input".
    """
    with _role(role):
        check_nesting(value, _label(field), LiteralConversionError)
        return _to_literal(value, lt if lt is not None else types_pb2.LiteralType(), field)


def to_literal_map(
    values: Mapping[str, Any], types: Mapping[str, types_pb2.LiteralType | Any] | None = None,
    *, role: str | None = None,
) -> literals_pb2.LiteralMap:
    """Convert named values; ``types`` holds LiteralTypes or Python types, missing names are inferred."""
    types = types or {}
    with _role(role):
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


def _unpack_msgpack(data: bytes, field: str) -> Any:
    """msgpack bytes (from the wire: untrusted) as plain Python values; ext types are refused."""
    import msgpack

    def no_ext(code: int, _data: bytes) -> Any:
        raise ValueError(f"msgpack extension type {code} is not supported")

    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=no_ext, timestamp=0)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise LiteralConversionError(f"{_label(field)}: malformed msgpack value: {e}") from None
    check_nesting(value, _label(field), LiteralConversionError)
    return value


def _decode_primitive(prim: literals_pb2.Primitive, field: str) -> Any:
    which = prim.WhichOneof("value")
    try:
        if which == "datetime":
            return prim.datetime.ToDatetime(tzinfo=dt.timezone.utc)
        if which == "duration":
            return prim.duration.ToTimedelta()
    except (OverflowError, ValueError) as e:
        raise LiteralConversionError(f"{_label(field)}: {which} out of range: {e}") from None
    return getattr(prim, which) if which else None


def _decode_scalar(scalar: literals_pb2.Scalar, field: str) -> Any:
    kind = scalar.WhichOneof("value")
    if kind == "primitive":
        return _decode_primitive(scalar.primitive, field)
    if kind == "none_type":
        return None
    if kind == "generic":
        try:
            return _json_ints(json_format.MessageToDict(scalar.generic))
        except (ValueError, json_format.Error) as e:
            raise LiteralConversionError(f"{_label(field)}: unreadable struct: {e}") from None
    if kind == "union":
        return _decode(scalar.union.value, field)
    if kind == "blob":
        multipart = scalar.blob.metadata.type.dimensionality == types_pb2.BlobType.MULTIPART
        return Blob(scalar.blob.uri, scalar.blob.metadata.type.format, multipart)
    if kind == "structured_dataset":
        sd = scalar.structured_dataset
        return StructuredDataset(sd.uri, sd.metadata.structured_dataset_type.format)
    if kind == "binary":
        if scalar.binary.tag == MSGPACK_TAG:
            return _unpack_msgpack(scalar.binary.value, field)
        return scalar.binary.value
    raise LiteralConversionError(f"{_label(field)}: unsupported literal scalar {kind}; expected {_SUPPORTED}")


def _decode(literal: literals_pb2.Literal, field: str, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise LiteralConversionError(f"{_label(field)}: literal nested deeper than {MAX_DEPTH} levels")
    kind = literal.WhichOneof("value")
    if kind == "scalar":
        value = _decode_scalar(literal.scalar, field)
        if isinstance(value, dt.datetime) and literal.metadata.get(NAIVE_DATETIME) == "true":
            return value.replace(tzinfo=None)
        return value
    if kind == "collection":
        return [_decode(v, f"{field}[{i}]", depth + 1) for i, v in enumerate(literal.collection.literals)]
    if kind == "map":
        return {k: _decode(v, f"{field}[{k!r}]", depth + 1) for k, v in literal.map.literals.items()}
    raise LiteralConversionError(f"{_label(field)}: unsupported literal {kind}; expected a scalar, list or map")


def to_python(
    literal: literals_pb2.Literal, lt: types_pb2.LiteralType | None = None, *, field: str = "value",
    role: str | None = None,
) -> Any:
    """Convert a Literal back to Python; blobs and datasets come back as ``Blob``/``StructuredDataset``.

    ``role`` ("input", "output") names what the value is in error messages; the default is "input".
    """
    with _role(role):
        value = _decode(literal, field)
        if lt is None or lt.WhichOneof("type") is None:
            return value
        # Re-encoding against the declared type both validates and applies to_literal's coercions (int -> float).
        return _decode(_to_literal(value, lt, field), field)


def to_python_dict(
    lm: literals_pb2.LiteralMap, types: Mapping[str, types_pb2.LiteralType] | None = None,
    *, role: str | None = None,
) -> dict[str, Any]:
    """Convert every entry of a LiteralMap, checking those named in ``types``; pass ``role="output"`` for outputs."""
    types = types or {}
    with _role(role):
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
        frame: pandas.DataFrame = reader(path)
        return frame
    # A directory holds part files (as Flyte writes them); hidden files like _SUCCESS markers are skipped.
    parts = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    if not parts:
        raise InputError(f"cannot read structured dataset {sd.uri!r}: directory {path} has no files")
    combined: pandas.DataFrame = pd.concat([reader(p) for p in parts], ignore_index=True)
    return combined
