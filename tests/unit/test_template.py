from __future__ import annotations

import datetime as dt
from typing import Any, Optional

import pytest
from flyteidl.core import identifier_pb2, tasks_pb2, types_pb2

import connector_nb
from connector_nb.errors import InputError, LiteralConversionError
from connector_nb.literals import Blob, literal_type, to_python_dict, type_name
from connector_nb.template import (
    bind_inputs,
    custom_dict,
    interface_types,
    task_template,
    with_inferred_interface,
)

S = types_pb2.SimpleType


def sleep_template(**kwargs: Any) -> tasks_pb2.TaskTemplate:
    return task_template("sleep", inputs={"seconds": float, "fail": bool}, outputs={"slept": float}, **kwargs)


def test_task_template_fields() -> None:
    t = task_template(
        "bigquery", inputs={"q": str}, outputs={"rows": list[int]}, custom={"region": "eu", "n": 2}, version=3
    )
    assert t.type == "bigquery"
    assert t.task_type_version == 3
    assert t.id.resource_type == identifier_pb2.ResourceType.TASK
    assert (t.id.project, t.id.domain, t.id.name, t.id.version) == ("connector_nb", "development", "bigquery", "3")
    assert t.interface.inputs.variables["q"].type.simple == S.STRING
    assert t.interface.inputs.variables["q"].description == "q"
    assert type_name(t.interface.outputs.variables["rows"].type) == "list[int]"
    assert t.metadata.runtime.type == tasks_pb2.RuntimeMetadata.OTHER
    assert t.metadata.runtime.flavor == "connector_nb"
    assert t.metadata.runtime.version == connector_nb.__version__
    assert custom_dict(t) == {"region": "eu", "n": 2}


def test_task_template_name_and_literal_types() -> None:
    lt = types_pb2.LiteralType(simple=S.DURATION)
    t = task_template("sleep", inputs={"d": lt}, name="my-sleep")
    assert t.id.name == "my-sleep"
    assert interface_types(t)[0] == {"d": lt}


def test_task_template_serialises() -> None:
    t = sleep_template(custom={"k": [1, {"a": None}]})
    again = tasks_pb2.TaskTemplate.FromString(t.SerializeToString())
    assert again == t
    assert custom_dict(again) == {"k": [1, {"a": None}]}


def test_custom_absent_is_empty_dict() -> None:
    t = task_template("x")
    assert not t.HasField("custom")
    assert custom_dict(t) == {}
    assert interface_types(t) == ({}, {})


@pytest.mark.parametrize(
    ("custom", "message"),
    [
        ({"ok": 1, "bad": {1, 2}}, r"custom\['bad'\] is not JSON-serialisable"),
        ({"when": dt.datetime(2024, 1, 1)}, r"custom\['when'\] is not JSON-serialisable"),
        ({3: "x"}, r"custom\[3\] is not JSON-serialisable: key must be str"),
    ],
)
def test_malformed_custom_names_key(custom: dict[Any, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        task_template("x", custom=custom)


def test_unsupported_interface_type_names_field() -> None:
    with pytest.raises(LiteralConversionError, match="input 'tags': unsupported type set"):
        task_template("x", inputs={"tags": set[str]})


def test_interface_types() -> None:
    inputs, outputs = interface_types(sleep_template())
    assert [(n, type_name(t)) for n, t in inputs.items()] == [("fail", "bool"), ("seconds", "float")]
    assert {n: type_name(t) for n, t in outputs.items()} == {"slept": "float"}


def test_bind_inputs_converts_and_coerces() -> None:
    lm = bind_inputs(sleep_template(), {"seconds": 2, "fail": True})
    assert lm.literals["seconds"].scalar.primitive.float_value == 2.0
    assert lm.literals["fail"].scalar.primitive.boolean is True


def test_bind_inputs_applies_defaults_under_inputs() -> None:
    t = sleep_template()
    lm = bind_inputs(t, {"seconds": 1.5}, defaults={"seconds": 9.0, "fail": False})
    assert to_python_dict(lm, interface_types(t)[0]) == {"seconds": 1.5, "fail": False}
    lm = bind_inputs(t, None, defaults={"seconds": 9.0, "fail": False})
    assert to_python_dict(lm) == {"seconds": 9.0, "fail": False}


def test_bind_inputs_unknown_name_lists_expected() -> None:
    with pytest.raises(InputError) as info:
        bind_inputs(sleep_template(), {"secs": 1.0, "fail": False})
    assert str(info.value) == "task 'sleep' has no input 'secs'; expected: fail (bool), seconds (float)"


def test_bind_inputs_several_unknown_names() -> None:
    with pytest.raises(InputError, match=r"task 'sleep' has no inputs 'a', 'b'; expected: fail \(bool\), seconds"):
        bind_inputs(sleep_template(), {"a": 1, "b": 2})


def test_bind_inputs_missing_required() -> None:
    with pytest.raises(InputError) as info:
        bind_inputs(sleep_template(), {"seconds": 1.0})
    assert str(info.value) == "task 'sleep' is missing required input 'fail'; expected: fail (bool), seconds (float)"


def test_bind_inputs_missing_several_uses_template_name() -> None:
    with pytest.raises(InputError, match="task 'nap' is missing required inputs 'fail', 'seconds'"):
        bind_inputs(sleep_template(name="nap"), {})


def test_bind_inputs_optional_defaults_to_none() -> None:
    t = task_template("q", inputs={"query": str, "limit": Optional[int], "label": int | None})  # noqa: UP045
    lm = bind_inputs(t, {"query": "select 1", "label": 4})
    assert to_python_dict(lm, interface_types(t)[0]) == {"query": "select 1", "limit": None, "label": 4}
    assert lm.literals["limit"].scalar.union.value.scalar.HasField("none_type")


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"seconds": "abc", "fail": False}, "input 'seconds': expected float, got str 'abc'"),
        ({"seconds": 1.0, "fail": 1}, "input 'fail': expected bool, got int 1"),
        ({"seconds": True, "fail": False}, "input 'seconds': expected float, got bool True"),
        ({"seconds": None, "fail": False}, "input 'seconds': expected float, got NoneType None"),
    ],
)
def test_bind_inputs_wrong_types(inputs: dict[str, Any], message: str) -> None:
    with pytest.raises(LiteralConversionError, match=message):
        bind_inputs(sleep_template(), inputs)


def test_bind_inputs_bool_for_int_rejected() -> None:
    t = task_template("count", inputs={"n": int})
    with pytest.raises(InputError, match="input 'n': expected int, got bool True"):
        bind_inputs(t, {"n": True})


def test_bind_inputs_without_interface_infers_types() -> None:
    t = task_template("remote")
    lm = bind_inputs(t, {"n": 3, "flag": True, "xs": [1.5]}, defaults={"name": "d"})
    assert lm.literals["n"].scalar.primitive.integer == 3
    assert lm.literals["flag"].scalar.primitive.boolean is True
    assert to_python_dict(lm) == {"n": 3, "flag": True, "xs": [1.5], "name": "d"}
    assert len(bind_inputs(t, None).literals) == 0


def test_bind_inputs_without_interface_reports_uninferable_value() -> None:
    with pytest.raises(InputError, match="input 'tags': cannot convert a set"):
        bind_inputs(task_template("remote"), {"tags": {"a"}})


def test_with_inferred_interface() -> None:
    t = with_inferred_interface(
        "remote", {"n": 1, "f": 2.5, "flag": False, "xs": [1, 2], "cfg": {"a": "b", "n": 1}, "blob": Blob("s3://b")},
        custom={"url": "http://x"}, version=2,
    )
    inputs, outputs = interface_types(t)
    assert {n: type_name(lt) for n, lt in inputs.items()} == {
        "n": "int", "f": "float", "flag": "bool", "xs": "list[int]", "cfg": "json", "blob": "blob",
    }
    assert outputs == {}
    assert (t.type, t.task_type_version, custom_dict(t)) == ("remote", 2, {"url": "http://x"})
    lm = bind_inputs(t, {"n": 5, "f": 1, "flag": True, "xs": [], "cfg": {}, "blob": "s3://c"})
    assert lm.literals["f"].scalar.primitive.float_value == 1.0
    with pytest.raises(InputError, match="input 'n': expected int, got str"):
        bind_inputs(t, {"n": "5", "f": 1, "flag": True, "xs": [], "cfg": {}, "blob": "s3://c"})


def test_literal_type_passthrough_in_template_matches_python_type() -> None:
    assert task_template("x", inputs={"a": dict[str, float]}) == task_template(
        "x", inputs={"a": literal_type(dict[str, float])}
    )
