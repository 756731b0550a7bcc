from __future__ import annotations

import datetime as dt
import re
from typing import Any, List, Optional

import pandas as pd
import pytest
from flyteidl.core import literals_pb2, types_pb2

from connector_nb.errors import InputError, LiteralConversionError
from connector_nb.literals import (
    Blob,
    StructuredDataset,
    infer_type,
    literal_type,
    load_dataframe,
    to_literal,
    to_literal_map,
    to_python,
    to_python_dict,
    type_name,
)

S = types_pb2.SimpleType
UTC = dt.timezone.utc
PLUS2 = dt.timezone(dt.timedelta(hours=2))


@pytest.mark.parametrize(
    ("py_type", "name"),
    [
        (int, "int"),
        (float, "float"),
        (str, "str"),
        (bool, "bool"),
        (dt.datetime, "datetime"),
        (dt.timedelta, "timedelta"),
        (type(None), "None"),
        (list[int], "list[int]"),
        (List[int], "list[int]"),  # noqa: UP006 - the typing alias must work too
        (list[list[str]], "list[list[str]]"),
        (dict[str, float], "dict[str, float]"),
        (dict, "json"),
        (dict[str, Any], "json"),
        (Any, "json"),
        (Optional[int], "int | None"),  # noqa: UP045
        (int | None, "int | None"),
        (Blob, "blob"),
        (StructuredDataset, "structured_dataset"),
        (pd.DataFrame, "structured_dataset"),
    ],
)
def test_literal_type_names(py_type: Any, name: str) -> None:
    assert type_name(literal_type(py_type)) == name


def test_literal_type_shapes() -> None:
    assert literal_type(int).simple == S.INTEGER
    assert literal_type(list[int]).collection_type.simple == S.INTEGER
    assert literal_type(dict[str, float]).map_value_type.simple == S.FLOAT
    variants = literal_type(Optional[str]).union_type.variants  # noqa: UP045
    assert [v.simple for v in variants] == [S.STRING, S.NONE]
    assert [v.structure.tag for v in variants] == ["str", "None"]
    assert literal_type(Blob).blob.dimensionality == types_pb2.BlobType.SINGLE
    assert literal_type(pd.DataFrame).HasField("structured_dataset_type")
    lt = types_pb2.LiteralType(simple=S.BOOLEAN)
    assert literal_type(lt) is lt


def test_structured_dataset_type_name_shows_format() -> None:
    lt = types_pb2.LiteralType(structured_dataset_type=types_pb2.StructuredDatasetType(format="csv"))
    assert type_name(lt) == "structured_dataset(csv)"


@pytest.mark.parametrize(
    ("py_type", "shown"),
    [
        (set[int], "set[int]"),
        (bytes, "bytes"),
        (tuple[int, str], "tuple[int, str]"),
        (dict[int, str], "dict[int, str]"),
    ],
)
def test_literal_type_unsupported_names_field_and_type(py_type: Any, shown: str) -> None:
    pattern = rf"input 'x': unsupported type {re.escape(shown)}(;| \().*expected int, float"
    with pytest.raises(LiteralConversionError, match=pattern):
        literal_type(py_type, field="x")


def test_literal_type_unsupported_nested_names_field() -> None:
    with pytest.raises(LiteralConversionError, match="input 'xs': unsupported type complex"):
        literal_type(list[complex], field="xs")


ROUND_TRIPS = [
    (7, int),
    (-3, int),
    (2.5, float),
    ("héllo", str),
    (True, bool),
    (False, bool),
    (dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC), dt.datetime),
    (dt.timedelta(days=1, seconds=5, microseconds=7), dt.timedelta),
    (None, type(None)),
    ([1, 2, 3], list[int]),
    ([[1, 2], [], [3]], list[list[int]]),
    ({"a": 1.5, "b": -2.0}, dict[str, float]),
    ({"name": "x", "n": 3, "nested": {"ok": True, "xs": [1, "a", None]}}, dict),
    ({"k": [1.5, 2]}, Any),
    (5, Optional[int]),  # noqa: UP045
    (None, Optional[int]),  # noqa: UP045
    ("s", str | None),
    ([1, None], list[Optional[int]]),  # noqa: UP045
    (Blob("s3://bucket/file.csv", "csv"), Blob),
    (Blob("s3://bucket/dir", "parquet", multipart=True), Blob),
    (StructuredDataset("s3://bucket/table", "parquet"), StructuredDataset),
]


@pytest.mark.parametrize(("value", "py_type"), ROUND_TRIPS)
def test_round_trip_with_declared_type(value: Any, py_type: Any) -> None:
    lt = literal_type(py_type)
    back = to_python(to_literal(value, lt), lt)
    assert back == value
    assert type(back) is type(value)


@pytest.mark.parametrize(("value", "py_type"), ROUND_TRIPS)
def test_round_trip_inferred(value: Any, py_type: Any) -> None:
    assert to_python(to_literal(value)) == value


def test_datetime_with_timezone_comes_back_as_same_instant_in_utc() -> None:
    value = dt.datetime(2024, 1, 1, 0, 0, tzinfo=PLUS2)
    back = to_python(to_literal(value))
    assert back == value
    assert back.tzinfo == UTC
    assert back.hour == 22


def test_naive_datetime_is_sent_as_utc_and_comes_back_naive() -> None:
    lit = to_literal(dt.datetime(2024, 1, 1, 8, 0))
    assert lit.scalar.primitive.datetime.seconds == int(dt.datetime(2024, 1, 1, 8, tzinfo=UTC).timestamp())
    back = to_python(lit)
    assert back == dt.datetime(2024, 1, 1, 8, 0) and back.tzinfo is None
    typed = to_python(lit, literal_type(dt.datetime))
    assert typed.tzinfo is None


def test_int_for_float_is_coerced() -> None:
    lit = to_literal(3, literal_type(float))
    assert lit.scalar.primitive.WhichOneof("value") == "float_value"
    back = to_python(lit, literal_type(float))
    assert back == 3.0 and isinstance(back, float)


def test_to_python_coerces_integer_literal_for_float_type() -> None:
    back = to_python(to_literal(4), literal_type(float))
    assert isinstance(back, float)


def test_optional_literal_is_a_union_with_variant_type() -> None:
    lt = literal_type(Optional[int])  # noqa: UP045
    lit = to_literal(None, lt)
    assert lit.scalar.union.type.simple == S.NONE
    assert lit.scalar.union.value.scalar.HasField("none_type")
    assert to_literal(4, lt).scalar.union.value.scalar.primitive.integer == 4


def test_structured_dataset_literal_layout() -> None:
    lit = to_literal(StructuredDataset("file:///tmp/t.csv", "csv"))
    sd = lit.scalar.structured_dataset
    assert sd.uri == "file:///tmp/t.csv"
    assert sd.metadata.structured_dataset_type.format == "csv"


def test_uri_string_accepted_for_blob_and_dataset_types() -> None:
    sd_type = types_pb2.LiteralType(structured_dataset_type=types_pb2.StructuredDatasetType(format="csv"))
    assert to_python(to_literal("/data/t.csv", sd_type)) == StructuredDataset("/data/t.csv", "csv")
    assert to_python(to_literal("s3://b/f", literal_type(Blob))) == Blob("s3://b/f")


@pytest.mark.parametrize(
    ("value", "py_type", "message"),
    [
        ("abc", float, "input 'f': expected float, got str 'abc'"),
        ("1", int, "input 'f': expected int, got str '1'"),
        (True, int, "input 'f': expected int, got bool True"),
        (False, float, "input 'f': expected float, got bool False"),
        (1, bool, "input 'f': expected bool, got int 1"),
        (1.5, int, "input 'f': expected int, got float 1.5"),
        (None, int, "input 'f': expected int, got NoneType None"),
        (0, type(None), "input 'f': expected None, got int 0"),
        ("2024-01-01", dt.datetime, "input 'f': expected datetime, got str"),
        (5, dt.timedelta, "input 'f': expected timedelta, got int 5"),
        ([1, "a"], list[int], r"input 'f\[1\]': expected int, got str 'a'"),
        ((1, 2), dict[str, int], "input 'f': expected dict\\[str, int\\], got tuple"),
        ({"a": "x"}, dict[str, float], r"input \"f\['a'\]\": expected float, got str 'x'"),
        ([1], dict, r"input 'f': expected json, got list \[1\]"),
        ("x", Optional[int], r"input 'f': expected int \| None, got str 'x'"),  # noqa: UP045
        (3, Blob, "input 'f': expected blob, got int 3"),
        (3, StructuredDataset, "input 'f': expected structured_dataset, got int 3"),
    ],
)
def test_wrong_value_type_names_field_and_expected_type(value: Any, py_type: Any, message: str) -> None:
    with pytest.raises(LiteralConversionError, match=message):
        to_literal(value, literal_type(py_type), field="f")


def test_conversion_error_is_an_input_error() -> None:
    with pytest.raises(InputError):
        to_literal("x", literal_type(int))


def test_struct_rejects_values_it_cannot_encode() -> None:
    with pytest.raises(LiteralConversionError, match="input 'cfg': value cannot be encoded"):
        to_literal({"a": {1, 2}}, literal_type(dict), field="cfg")
    with pytest.raises(LiteralConversionError, match="dict keys must be str"):
        to_literal({1: 2}, literal_type(dict), field="cfg")


def test_long_values_are_shortened_in_messages() -> None:
    with pytest.raises(LiteralConversionError) as info:
        to_literal("y" * 500, literal_type(int))
    assert len(str(info.value)) < 120
    assert "..." in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, bool),
        (1, int),
        (1.0, float),
        ("s", str),
        (None, type(None)),
        ([1, 2], list[int]),
        ([1, 2.5], list[int | float]),
        ([2.5, 1, None], list[Optional[int | float]]),  # noqa: UP045
        ([True, False], list[bool]),
        ([], list[Any]),
        ([[1], [2]], list[list[int]]),
        ([[1], []], list[list[int]]),
        ({"xs": [1, "a"]}, dict[str, list[int | str]]),
        ({"a": 1.0, "b": "x"}, dict),
        ([1, None], list[Optional[int]]),  # noqa: UP045
        ({"a": 1, "b": 2}, dict[str, int]),
        ({"a": 1, "b": "x"}, dict),
        ({}, dict),
        ([{"a": 1}, {"b": "x"}], list[Any]),
        (Blob("u"), Blob),
        (StructuredDataset("u"), StructuredDataset),
    ],
)
def test_infer_type(value: Any, expected: Any) -> None:
    assert infer_type(value) == expected


def test_infer_bool_and_int_do_not_merge() -> None:
    assert infer_type([1, True]) == list[bool | int]
    assert to_python(to_literal([1, True, 2])) == [1, True, 2]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1: "a"}, "dict keys must be str, got int"),
        ([1, [2]], r"list elements have different types \(int, list\[int\]\)"),
        ({1, 2}, "cannot convert a set"),
        (object(), "cannot convert a object"),
    ],
)
def test_infer_type_errors(value: Any, message: str) -> None:
    with pytest.raises(LiteralConversionError, match=message):
        infer_type(value)


def test_to_literal_inference_error_names_field() -> None:
    with pytest.raises(LiteralConversionError, match="input 'tags': cannot convert a set"):
        to_literal({"a"}, field="tags")


def test_literal_map_round_trip_with_mixed_type_specs() -> None:
    values = {"seconds": 2, "fail": False, "name": "n", "extra": [1.5]}
    types = {"seconds": float, "fail": literal_type(bool), "name": str}
    lm = to_literal_map(values, types)
    assert lm.literals["seconds"].scalar.primitive.float_value == 2.0
    assert lm.literals["extra"].collection.literals[0].scalar.primitive.float_value == 1.5
    back = to_python_dict(lm, {"seconds": literal_type(float)})
    assert back == {"seconds": 2.0, "fail": False, "name": "n", "extra": [1.5]}
    assert isinstance(back["seconds"], float)


def test_literal_map_error_names_field() -> None:
    with pytest.raises(LiteralConversionError, match="input 'seconds': expected float, got str 'abc'"):
        to_literal_map({"seconds": "abc"}, {"seconds": float})


def test_to_python_checks_declared_type() -> None:
    with pytest.raises(LiteralConversionError, match="expected int, got str 'a'"):
        to_python(to_literal("a"), literal_type(int), field="out")


def test_to_python_rejects_empty_literal() -> None:
    with pytest.raises(LiteralConversionError, match="input 'v': unsupported literal None"):
        to_python(literals_pb2.Literal(), field="v")


# ----------------------------------------------------------------------------------- load_dataframe


def test_load_dataframe_csv_file(tmp_path: Any) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_csv(path, index=False)
    df = load_dataframe(StructuredDataset(str(path), "csv"))
    assert df.to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}


def test_load_dataframe_file_uri_and_directory_of_parts(tmp_path: Any) -> None:
    (tmp_path / "part-0.csv").write_text("a,b\n1,x\n")
    (tmp_path / "part-1.csv").write_text("a,b\n2,y\n3,z\n")
    (tmp_path / "_SUCCESS").write_text("")
    df = load_dataframe(StructuredDataset(tmp_path.as_uri(), "csv"))
    assert df["a"].tolist() == [1, 2, 3]
    assert df.index.tolist() == [0, 1, 2]


def test_load_dataframe_jsonl(tmp_path: Any) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n')
    assert load_dataframe(StructuredDataset(str(path), "jsonl"))["a"].tolist() == [1, 2]


@pytest.mark.parametrize(
    ("uri", "fmt", "message"),
    [
        ("{tmp}/t.csv", "xlsx", "unknown format 'xlsx'; expected one of csv, parquet, json, jsonl"),
        ("{tmp}/missing.csv", "csv", "does not exist"),
        ("s3://bucket/t.csv", "csv", "only local paths and file:// URIs"),
        ("{tmp}", "csv", "has no files"),
    ],
)
def test_load_dataframe_errors(tmp_path: Any, uri: str, fmt: str, message: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=message):
        load_dataframe(StructuredDataset(uri.format(tmp=empty), fmt))


# ------------------------------------------------------------------------- values kept, or a named error


PLUS5 = dt.timezone(dt.timedelta(hours=5))


def test_int_past_int64_is_an_error_naming_the_field() -> None:
    assert to_python(to_literal(2**63 - 1)) == 2**63 - 1
    for value in (2**63, -(2**63) - 1, 10**40):
        with pytest.raises(LiteralConversionError, match="input 'n': int .* does not fit in int64"):
            to_literal(value, field="n")
    with pytest.raises(LiteralConversionError, match="input 'n'"):
        to_literal(10**400, literal_type(float), field="n")


@pytest.mark.parametrize(
    "value",
    [[1, 2.5], [2.5, 1], [True, 1, 0.5], [1, "a", None], {"a": 1.0, "b": "x"}, {"a": 1, "b": 2.5},
     {"k": 9007199254740993}, {"k": {"a": float("inf"), "b": -float("inf")}}, {"k": [1, 1.0, True]}],
)
def test_round_trip_keeps_values_and_element_types(value: Any) -> None:
    back = to_python(to_literal(value, field="v"))
    assert back == value
    assert _typed(back) == _typed(value)  # 1 vs 1.0 vs True differ in type, not in ==


def _typed(value: Any) -> Any:
    """A value with every element's type spelled out; dict key order does not matter (maps are unordered)."""
    if isinstance(value, dict):
        return sorted((k, _typed(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_typed(v) for v in value]
    return (type(value).__name__, repr(value))


def test_datetimes_keep_their_tz_awareness() -> None:
    naive, aware = dt.datetime(2024, 3, 1, 9, 30), dt.datetime(2024, 3, 1, 9, 30, tzinfo=PLUS5)
    back = to_python(to_literal([naive, naive]))
    assert back == [naive, naive] and all(b.tzinfo is None for b in back)
    assert to_python(to_literal(aware)).tzinfo is not None and to_python(to_literal(aware)) == aware
    assert to_python(to_literal({"when": naive})) == {"when": naive}


def test_datetime_out_of_range_is_a_named_error() -> None:
    with pytest.raises(LiteralConversionError, match=r"input .at.: datetime 0001-01-01T00:00:00\+05:00 is out of"):
        to_literal(dt.datetime(1, 1, 1, tzinfo=PLUS5), field="at")
    assert to_python(to_literal(dt.timedelta.max)) == dt.timedelta.max
    assert to_python(to_literal(dt.timedelta.min)) == dt.timedelta.min
    prim = literals_pb2.Primitive()
    prim.duration.seconds = 2**62  # from the wire: larger than any timedelta
    with pytest.raises(LiteralConversionError, match="output 'd': duration out of range"):
        to_python(literals_pb2.Literal(scalar=literals_pb2.Scalar(primitive=prim)), field="d", role="output")


def test_lone_surrogate_is_a_named_error() -> None:
    for value in ("a\ud800b", ["ok", "\udfff"], {"k": "\ud800"}, {"\ud800": 1}, Blob("s3://\ud800")):
        with pytest.raises(LiteralConversionError, match="input .s.*lone surrogate"):
            to_literal(value, field="s")


def test_non_finite_floats_round_trip() -> None:
    import math

    for value in (float("inf"), -float("inf")):
        assert to_python(to_literal(value)) == value
    assert math.isnan(to_python(to_literal(float("nan"))))
    assert math.isnan(to_python(to_literal({"x": float("nan")}, literal_type(dict)))["x"])


def test_deep_values_are_a_named_error_not_recursion() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(LiteralConversionError, match="input 'deep': nested deeper than"):
        to_literal(deep, field="deep")
    nested: Any = {}
    for _ in range(5000):
        nested = {"a": nested}
    with pytest.raises(LiteralConversionError, match="input 'cfg': nested deeper than"):
        to_literal(nested, literal_type(dict), field="cfg")


# --------------------------------------------------------------------------------------- msgpack STRUCT


def test_dicts_travel_as_msgpack_binary_like_flytekit_and_flyte2() -> None:
    import msgpack

    value = {"name": "x", "n": 3, "ratio": 0.5, "nested": {"ok": True, "xs": [1, "a", None]}}
    lit = to_literal(value, literal_type(dict))
    assert lit.scalar.binary.tag == "msgpack"
    assert msgpack.unpackb(lit.scalar.binary.value) == value
    # As flytekit writes a dict output: msgpack bytes with a STRUCT type.
    theirs = literals_pb2.Literal(scalar=literals_pb2.Scalar(
        binary=literals_pb2.Binary(value=msgpack.packb({"info": {"rows": 2}, "f": 1.5}), tag="msgpack")))
    assert to_python(theirs, literal_type(dict)) == {"info": {"rows": 2}, "f": 1.5}
    lm = literals_pb2.LiteralMap(literals={"info": theirs})
    assert to_python_dict(lm, {"info": literal_type(dict)}, role="output") == {"info": {"info": {"rows": 2}, "f": 1.5}}


def test_legacy_generic_struct_still_decodes() -> None:
    from google.protobuf import json_format, struct_pb2

    struct = json_format.ParseDict({"n": 3, "x": 1.5}, struct_pb2.Struct())
    lit = literals_pb2.Literal(scalar=literals_pb2.Scalar(generic=struct))
    assert to_python(lit, literal_type(dict)) == {"n": 3, "x": 1.5}


@pytest.mark.parametrize("data", [b"\xc1", b"\x92\x01", b"\xd4\x05\x00", b"\x91" * 100_000, b"\x81\x01"])
def test_malformed_msgpack_is_a_named_error(data: bytes) -> None:
    lit = literals_pb2.Literal(scalar=literals_pb2.Scalar(binary=literals_pb2.Binary(value=data, tag="msgpack")))
    with pytest.raises(LiteralConversionError, match="output 'res'") as info:
        to_python(lit, literal_type(dict), field="res", role="output")
    assert not str(info.value).startswith("input")


def test_output_errors_say_output() -> None:
    lm = literals_pb2.LiteralMap(literals={"info": to_literal("text")})
    with pytest.raises(LiteralConversionError, match="output 'info': expected json, got str"):
        to_python_dict(lm, {"info": literal_type(dict)}, role="output")
    with pytest.raises(LiteralConversionError, match="input 'info': expected json"):
        to_python_dict(lm, {"info": literal_type(dict)})


def test_an_unrepresentable_value_never_falls_through_to_a_wider_union_variant() -> None:
    with pytest.raises(LiteralConversionError, match=r"input 'v\[0\]': int 9223372036854775808 does not fit"):
        to_literal([2**63, 0.0], field="v")  # found by hypothesis: came back as a float before
    with pytest.raises(LiteralConversionError, match="does not fit in int64"):
        to_literal(2**63, literal_type(int | float), field="v")


def test_dict_inputs_and_outputs_keep_values_through_a_session_and_grpc(tmp_path, monkeypatch) -> None:
    """msgpack STRUCT both ways: in-process and over a real loopback gRPC server; outputs come back as dicts."""
    from connector_nb import ConnectorRegistry, Session
    from connector_nb.testing import FakeConnector, fast_policy

    monkeypatch.setenv("CONNECTOR_NB_HOME", str(tmp_path))
    info = {"rows": 2, "ratio": 1.0, "name": "x", "big": 9007199254740993, "when": None, "xs": [1, 2.5, True]}
    fake = FakeConnector(script=["SUCCEEDED"], outputs={"info": info})
    fake.output_types = {"info": dict}  # type: ignore[misc]
    with Session(registry=ConnectorRegistry([fake]), poll=fast_policy(), output_dir=str(tmp_path)) as local:
        run = local.launch("fake", {"cfg": {"a": 1.0, "b": "x"}})
        assert run.wait(timeout=20).phase == "SUCCEEDED"
        assert repr(run.outputs["info"]) == repr(info)
        server = local.serve(port=0)
        try:
            with Session(server.target, poll=fast_policy()) as remote:
                run = remote.launch("fake", {"cfg": {"a": 1.0, "b": "x", "n": 2**60}})
                assert run.wait(timeout=20).phase == "SUCCEEDED"
                assert repr(run.outputs["info"]) == repr(info)
        finally:
            server.stop()
        assert repr(fake.created[max(fake.created)]["cfg"]) == repr({"a": 1.0, "b": "x", "n": 2**60})
