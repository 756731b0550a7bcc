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


def test_naive_datetime_is_treated_as_utc() -> None:
    lit = to_literal(dt.datetime(2024, 1, 1, 8, 0))
    assert lit.scalar.primitive.datetime.seconds == int(dt.datetime(2024, 1, 1, 8, tzinfo=UTC).timestamp())
    assert to_python(lit) == dt.datetime(2024, 1, 1, 8, 0, tzinfo=UTC)


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


def test_struct_rejects_non_json() -> None:
    with pytest.raises(LiteralConversionError, match="input 'cfg': value is not JSON"):
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
        ([1, 2.5], list[float]),
        ([True, False], list[bool]),
        ([], list[Any]),
        ([[1], [2]], list[list[int]]),
        ([[1], []], list[list[int]]),
        ({"xs": [1, "a"]}, dict),
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
    with pytest.raises(LiteralConversionError, match=r"different types \(bool, int\)"):
        infer_type([True, 1])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1: "a"}, "dict keys must be str, got int"),
        ([1, "a"], r"list elements have different types \(int, str\)"),
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
    with pytest.raises(LiteralConversionError, match="value 'v': unsupported literal None"):
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
