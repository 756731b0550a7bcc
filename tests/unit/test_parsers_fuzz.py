"""Hostile input for every parser: only documented errors, never a crash; literal round trips keep values.

Each hypothesis target runs a bounded number of examples (``EXAMPLES``) so the file stays fast; the
examples run per target are printed (``pytest -s``) for the fuzzing figures.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

from connector_nb._args import parse_assignments, parse_json_object, parse_value
from connector_nb.connector import ResourceMeta
from connector_nb.errors import InputError, LiteralConversionError, MetadataError
from connector_nb.examples import ShellMeta, SleepMeta, SQLiteMeta
from connector_nb.literals import literal_type, to_literal, to_python
from connector_nb.magics import parse_cell

#: Per target; CONNECTOR_NB_FUZZ_EXAMPLES=3000 for a longer local run.
EXAMPLES = int(os.environ.get("CONNECTOR_NB_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RUNS: Counter[str] = Counter()

# Text including lone surrogates and control characters: what a wire or a paste can carry.
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-(10**400), 10**400) | st.floats()
                | ANY_TEXT)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(ANY_TEXT, inner, max_size=4), max_leaves=20)


def _deep(opening: str, n: int) -> str:
    return opening * n


HOSTILE_TEXT = st.one_of(
    ANY_TEXT,
    JSON_VALUES.map(lambda v: json.dumps(v, allow_nan=True)),
    st.sampled_from(["[", "{", "{\"a\":", "- ", "&a [*a]", "a: &a [*a, *a]", "!!python/object:os.system", "1e999",
                     "9" * 5000, "2024-13-45", "? [a]\n: b", "!!binary xyz"]).flatmap(
        lambda piece: st.integers(1, 20_000).map(lambda n: _deep(piece, n) if len(piece) <= 2 else piece)),
)


@pytest.fixture(scope="module", autouse=True)
def report_runs():
    yield
    print("\nfuzz examples per target:", dict(RUNS))


# ----------------------------------------------------------------------------------- ResourceMeta.decode


@dataclass
class _AllTypes(ResourceMeta):
    name: str
    count: int
    ratio: float
    flag: bool
    tags: list[str]
    extra: dict[str, int] | None = None


META_TYPES = [SleepMeta, ShellMeta, SQLiteMeta, _AllTypes]


def _meta_bytes() -> st.SearchStrategy[bytes]:
    fields = st.dictionaries(st.sampled_from(["job_id", "started_at", "seconds", "fail", "log_path", "pid", "name",
                                              "count", "ratio", "flag", "tags", "extra", "nope"]), JSON_VALUES,
                             max_size=8)
    return st.one_of(st.binary(max_size=200), HOSTILE_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
                     fields.map(lambda d: json.dumps(d).encode()))


@FUZZ
@given(data=_meta_bytes(), cls=st.sampled_from(META_TYPES))
def test_resource_meta_decode_raises_only_metadata_error(data: bytes, cls: type[ResourceMeta]) -> None:
    RUNS["ResourceMeta.decode"] += 1
    try:
        meta = cls.decode(data)
    except MetadataError:
        return
    assert type(cls.decode(meta.encode())) is cls  # whatever decodes re-encodes and decodes again


def test_resource_meta_decode_named_errors() -> None:
    with pytest.raises(MetadataError, match="nested deeper than"):
        SleepMeta.decode(b"[" * 100_000)
    with pytest.raises(MetadataError, match="field 'job_id' must be str, got NoneType"):
        SleepMeta.decode(b'{"job_id": null, "started_at": 0, "seconds": 1}')
    with pytest.raises(MetadataError, match="field 'seconds' must be float, got bool"):
        SleepMeta.decode(b'{"job_id": "a", "started_at": 0, "seconds": true}')
    with pytest.raises(MetadataError, match="field 'count' must be int, got float"):
        _AllTypes.decode(b'{"name": "n", "count": 1.5, "ratio": 1, "flag": false, "tags": []}')
    with pytest.raises(MetadataError, match="field 'tags' must be list\\[str\\]"):
        _AllTypes.decode(b'{"name": "n", "count": 1, "ratio": 1, "flag": false, "tags": [1]}')
    with pytest.raises(MetadataError, match="unknown field\\(s\\) 'x'.*missing field\\(s\\) 'seconds'"):
        SleepMeta.decode(b'{"job_id": "a", "started_at": 0, "x": 1}')
    with pytest.raises(MetadataError, match="not JSON"):
        SleepMeta.decode(b'{"job_id": "a", "started_at": 0, "seconds": Infinity}')
    with pytest.raises(MetadataError, match="field 'started_at' must be float, got int"):
        SleepMeta.decode(b'{"job_id": "a", "started_at": 1' + b"0" * 400 + b', "seconds": 1}')
    meta = _AllTypes.decode(b'{"name": "n", "count": 1, "ratio": 2, "flag": false, "tags": ["a"]}')
    assert meta.ratio == 2.0 and isinstance(meta.ratio, float)  # an int is fine for a float field
    with pytest.raises(MetadataError, match="cannot encode"):
        SleepMeta(job_id="a", started_at=0.0, seconds=math.inf).encode()


# ------------------------------------------------------------------------------------- key=value parser


TYPES = {"command": str, "seconds": float, "count": int, "fail": bool, "xs": list[int], "cfg": dict,
         "when": dt.datetime, "maybe": int | None, "path": str | None}
ITEMS = st.lists(st.one_of(
    ANY_TEXT,
    st.tuples(st.sampled_from([*TYPES, "other", "x y", ""]), HOSTILE_TEXT).map(lambda kv: f"{kv[0]}={kv[1]}"),
), max_size=5)


@FUZZ
@given(items=ITEMS, typed=st.booleans())
def test_parse_assignments_raises_only_input_error(items: list[str], typed: bool) -> None:
    RUNS["parse_assignments"] += 1
    try:
        values = parse_assignments(items, TYPES if typed else None)
    except InputError:
        return
    last = {key.strip(): text for key, sep, text in (item.partition("=") for item in items) if sep}
    for name in ("command", "path"):
        if typed and name in last:
            assert values[name] == last[name]  # a str input keeps its text exactly ("true" stays "true")
    if typed and "seconds" in values:
        assert isinstance(values["seconds"], (int, float)) and not isinstance(values["seconds"], bool)


def test_parse_assignments_reads_the_declared_type() -> None:
    values = parse_assignments(["command=true", "seconds=2", "fail=false", "xs=[1,2]", "path=null", "n=3"],
                               {"command": str, "seconds": float, "fail": bool, "xs": list[int], "path": str})
    assert values == {"command": "true", "seconds": 2, "fail": False, "xs": [1, 2], "path": "null", "n": 3}
    assert parse_assignments(["maybe=null"], {"maybe": int | None}) == {"maybe": None}
    assert parse_assignments(["when=2024-05-01T12:00"], {"when": dt.datetime}) == {
        "when": dt.datetime(2024, 5, 1, 12, 0)}
    with pytest.raises(InputError, match="input 'seconds': expected float, got 'abc'"):
        parse_assignments(["seconds=abc"], {"seconds": float})
    with pytest.raises(InputError, match="input 'count': expected int, got 'true'"):
        parse_assignments(["count=true"], {"count": int})
    with pytest.raises(InputError, match="input 'key': nested deeper than"):
        parse_assignments(["key=" + "[" * 100_000])
    with pytest.raises(InputError, match="expected key=value"):
        parse_assignments(["no-equals"])
    assert parse_value("[[1]]") == [[1]] and parse_value("plain") == "plain"


@FUZZ
@given(text=HOSTILE_TEXT)
def test_parse_json_object_raises_only_input_error(text: str) -> None:
    RUNS["parse_json_object"] += 1
    try:
        value = parse_json_object(text, "--custom")
    except InputError:
        return
    assert isinstance(value, dict)


# ------------------------------------------------------------------------------------------ cell parser


CELLS = st.one_of(
    HOSTILE_TEXT,
    st.fixed_dictionaries({"task": ANY_TEXT}, optional={"inputs": JSON_VALUES, "custom": JSON_VALUES,
                                                        "version": JSON_VALUES}).map(json.dumps),
    st.integers(1, 2000).map(lambda n: "task: sleep\ninputs: " + "{a: " * n + "1" + "}" * n),
    # Block nesting past the depth limit (n > 64); deeper only costs PyYAML time (the text grows as n^2).
    st.integers(1, 200).map(lambda n: "task: x\ninputs:\n" + "".join("  " * i + f"k{i}:\n" for i in range(n))),
    st.integers(2, 12).map(lambda n: "a: &a [x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(n)) + "task: t"),
)


@FUZZ
@given(cell=CELLS)
def test_parse_cell_raises_only_usage_error(cell: str) -> None:
    RUNS["parse_cell"] += 1
    try:
        spec = parse_cell(cell)
    except UsageError:
        return
    assert isinstance(spec, dict) and "task" in spec


def test_parse_cell_named_errors() -> None:
    with pytest.raises(UsageError, match="nested deeper than"):
        parse_cell("task: t\ninputs: " + "[" * 50_000)
    with pytest.raises(UsageError, match="nested deeper than"):
        parse_cell("task: t\ninputs: {a: &a [*a]}")
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9))
    with pytest.raises(UsageError, match="more than"):
        parse_cell(laughs + "task: t")
    with pytest.raises(UsageError, match="cannot be read"):
        parse_cell("task: t\ninputs: {when: 2024-13-45}")
    assert parse_cell("{task: sleep, inputs: {seconds: 1}}") == {"task": "sleep", "inputs": {"seconds": 1}}


# ------------------------------------------------------------------------------------ literal round trips


OFFSETS = st.builds(lambda m: dt.timezone(dt.timedelta(minutes=m)), st.integers(-23 * 60 - 59, 23 * 60 + 59))
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), ANY_TEXT,
    st.datetimes(timezones=st.none() | OFFSETS), st.timedeltas(),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(ANY_TEXT, inner, max_size=4), max_leaves=16)


def same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1 is not 1.0 is not True); NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dt.datetime):
        return a == b and (a.tzinfo is None) == (b.tzinfo is None)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@FUZZ
@given(value=VALUES)
def test_literal_round_trip_keeps_the_value_or_raises_when_converting(value: Any) -> None:
    RUNS["literal round trip"] += 1
    try:
        literal = to_literal(value, field="v")
    except LiteralConversionError:
        return
    back = to_python(literal, field="v")
    assert same(back, value), (value, back)


@FUZZ
@given(value=st.dictionaries(ANY_TEXT, VALUES, max_size=4))
def test_struct_round_trip_keeps_the_value_or_raises_when_converting(value: dict[str, Any]) -> None:
    RUNS["struct (msgpack) round trip"] += 1
    lt = literal_type(dict)
    try:
        literal = to_literal(value, lt, field="cfg")
    except LiteralConversionError:
        return
    assert same(to_python(literal, lt, field="cfg"), value)


def test_magic_line_reads_inputs_as_their_declared_types(tmp_path, monkeypatch) -> None:
    """``%connector launch shell command=true`` sends the string "true"; a deep value is a UsageError."""
    from IPython.core.interactiveshell import InteractiveShell

    from connector_nb import ConnectorRegistry, Session
    from connector_nb.examples import CONNECTORS
    from connector_nb.magics import SESSION_NAME

    monkeypatch.setenv("CONNECTOR_NB_HOME", str(tmp_path / "state"))
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "connector_nb")
    session = Session(registry=ConnectorRegistry(list(CONNECTORS)), output_dir=str(tmp_path))
    shell.user_ns[SESSION_NAME] = session
    try:
        run = shell.run_line_magic("connector", "launch shell command=true --wait")
        assert run.inputs["command"] == "true" and run.phase == "SUCCEEDED"
        with pytest.raises(UsageError, match="input 'seconds': expected float, got 'soon'"):
            shell.run_line_magic("connector", "launch sleep seconds=soon")
        with pytest.raises(UsageError, match="nested deeper than"):
            shell.run_line_magic("connector", "launch sleep seconds=" + "[" * 10_000)
    finally:
        shell.run_line_magic("unload_ext", "connector_nb")
        session.close(cancel_running=True)
        shell.user_ns.pop(SESSION_NAME, None)


def test_parse_assignments_accepts_literal_types_from_a_template_interface() -> None:
    from connector_nb.literals import Blob

    types = {name: literal_type(t) for name, t in
             {"command": str, "seconds": float, "flag": bool, "path": str | None, "blob": Blob, "xs": list[int],
              "mixed": int | str}.items()}
    items = ["command=true", "seconds=1.5", "flag=true", "path=42", "blob=s3://b/k", "xs=[1]", "mixed=7"]
    assert parse_assignments(items, types) == {"command": "true", "seconds": 1.5, "flag": True, "path": "42",
                                               "blob": "s3://b/k", "xs": [1], "mixed": 7}
    with pytest.raises(InputError, match="input 'flag': expected bool, got 'yes'"):
        parse_assignments(["flag=yes"], types)
