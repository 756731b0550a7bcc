"""The example connectors, called directly (no session): real sleeps, subprocesses and SQLite queries."""

from __future__ import annotations

import asyncio
import csv
import inspect
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from flyteidl.core import tasks_pb2
from google.protobuf import json_format, struct_pb2

from connector_nb.connector import AsyncConnector, Resource, ResourceMeta
from connector_nb.errors import InputError, MetadataError
from connector_nb.examples import (
    CONNECTORS,
    ShellConnector,
    ShellMeta,
    SleepConnector,
    SleepMeta,
    SQLiteMeta,
    SQLiteQueryConnector,
    for_serving,
    make_demo_database,
)
from connector_nb.examples.shell import BASE_ENV
from connector_nb.examples.sleep import MAX_SECONDS
from connector_nb.helpers import safe_output_dir
from connector_nb.testing import process_group_gone

DEADLINE = 20.0


@pytest.fixture(autouse=True)
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Job records go to a per-test state directory, never the user's."""
    home = tmp_path / "state"
    monkeypatch.setenv("CONNECTOR_NB_HOME", str(home))
    return home


def call(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a connector method whether it is ``def`` or ``async def``."""
    result = method(*args, **kwargs)
    return asyncio.run(result) if inspect.iscoroutine(result) else result


def get(connector: AsyncConnector, meta: ResourceMeta) -> Resource:
    return call(connector.get, meta)


def wait_for(predicate: Callable[[], Any], deadline: float = DEADLINE, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, failing after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline} s waiting for {what}")
        time.sleep(0.02)


def wait_final(connector: AsyncConnector, meta: ResourceMeta) -> Resource:
    seen: list[Resource] = []

    def final() -> Resource | None:
        seen.append(get(connector, meta))
        return seen[-1] if seen[-1].is_final else None

    return wait_for(final, what=f"a final phase (last: {seen[-1].phase if seen else None})")


def logs(connector: AsyncConnector, meta: ResourceMeta, **kwargs: Any) -> tuple[str, list[str]]:
    """(header token, body lines) from an async-generator get_logs."""

    async def collect() -> tuple[str, list[str]]:
        token, lines = "", []
        async for response in connector.get_logs(meta, **kwargs):
            if response.HasField("header"):
                token = response.header.token
            else:
                lines.extend(response.body.results)
        return token, lines

    return asyncio.run(collect())


def series(response: Any, metric: str) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
    """(labels, [(t, value)]) per series of ``metric`` in a GetTaskMetricsResponse."""
    out = []
    for result in response.results:
        if result.metric == metric:
            for s in json_format.MessageToDict(result.data)["result"]:
                out.append((s["metric"], [(float(t), float(v)) for t, v in s["values"]]))
    return out


def template(task_type: str, custom: dict[str, Any] | None = None) -> tasks_pb2.TaskTemplate:
    t = tasks_pb2.TaskTemplate(type=task_type)
    if custom:
        t.custom.CopyFrom(json_format.ParseDict(custom, struct_pb2.Struct()))
    return t


def test_connectors_list_and_metadata_round_trip() -> None:
    assert CONNECTORS == [SleepConnector, ShellConnector, SQLiteQueryConnector]
    metas = [
        SleepMeta(job_id="j", started_at=1.5, seconds=2.0, fail=True, log_path="/tmp/x.log"),
        ShellMeta(pid=42, log_path="/a/output.log", metrics_path="/a/m.jsonl", started_at=3.25, output_prefix="/a"),
        SQLiteMeta(job_id="k", job_dir="/b/k", database="/b/db.sqlite"),
    ]
    for meta in metas:
        assert type(meta).decode(meta.encode()) == meta


# ---------------------------------------------------------------------------------------------- sleep


def test_sleep_moves_through_phases(tmp_path: Path) -> None:
    conn = SleepConnector()
    meta = conn.create(template("sleep"), str(tmp_path), {"seconds": 0.3})
    meta = SleepMeta.decode(meta.encode())  # state travels in the metadata only
    phases = [get(conn, meta).phase]
    final = wait_for(lambda: (phases.append(get(conn, meta).phase) or phases[-1] == "SUCCEEDED") and phases,
                     what="SUCCEEDED")
    order = list(dict.fromkeys(final))
    assert order[-1] == "SUCCEEDED" and set(order) <= {"QUEUED", "RUNNING", "SUCCEEDED"}
    assert order == sorted(order, key=["QUEUED", "RUNNING", "SUCCEEDED"].index)
    done = get(conn, meta)
    assert done.outputs == {"slept": 0.3}
    assert done.log_links[0].name == "sleep log" and done.log_links[0].uri.startswith("file://")
    assert Path(meta.log_path).exists()


def test_sleep_running_message_is_informative(tmp_path: Path) -> None:
    conn = SleepConnector()
    meta = conn.create(None, f"file://{tmp_path}", {"seconds": 30.0})
    running = wait_for(lambda: (r := get(conn, meta)).phase == "RUNNING" and r, what="RUNNING")
    assert running.message.startswith("running: ") and "of 30 s" in running.message
    conn.delete(meta)


def test_sleep_fail_and_delete(tmp_path: Path) -> None:
    conn = SleepConnector()
    failed = wait_final(conn, conn.create(None, str(tmp_path), {"seconds": 0.05, "fail": True}))
    assert failed.phase == "FAILED" and failed.message == "sleep failed as requested (fail=True)"

    meta = conn.create(None, str(tmp_path), {"seconds": 60})
    conn.delete(meta)
    conn.delete(meta)  # idempotent
    aborted = get(conn, meta)
    assert aborted.phase == "ABORTED" and aborted.message == "cancelled by delete"


def test_sleep_rejects_bad_inputs(tmp_path: Path) -> None:
    conn = SleepConnector()
    for inputs in ({}, {"seconds": -1}, {"seconds": "1"}, {"seconds": 1, "fail": "yes"}):
        with pytest.raises(InputError):
            conn.create(None, str(tmp_path), inputs)


def test_sleep_logs_and_metrics(tmp_path: Path) -> None:
    conn = SleepConnector()
    meta = conn.create(None, str(tmp_path), {"seconds": 1.1})
    wait_final(conn, meta)
    token, lines = logs(conn, meta)
    assert [line for line in lines if "tick" in line] == ["[t=0.50s] tick 1", "[t=1.00s] tick 2"]
    assert lines[-1].endswith("done: slept 1.1 s") and token == str(len(lines))
    # Pagination: a page of 2 lines, then the rest from its token.
    token2, first = logs(conn, meta, lines=2)
    _, rest = logs(conn, meta, token=token2)
    assert first == lines[:2] and token2 == "2" and first + rest == lines

    [(labels, points)] = series(call(conn.get_metrics, meta), "progress")
    assert labels == {"job_id": meta.job_id}
    values = [v for _, v in points]
    assert values[0] == 0 and values[-1] == 1.0 and values == sorted(values) and len(values) >= 5
    assert call(conn.get_metrics, meta, queries=["other"]).results == []


# ---------------------------------------------------------------------------------------------- shell


def test_shell_success_logs_and_metrics(tmp_path: Path) -> None:
    conn = ShellConnector()
    meta = conn.create(template("shell"), str(tmp_path), {"command": "echo hello; sleep 0.3; echo done"})
    assert get(conn, meta).phase in {"RUNNING", "SUCCEEDED"}
    done = wait_final(conn, meta)
    assert done.phase == "SUCCEEDED", done.message
    assert done.outputs == {"returncode": 0, "stdout_path": meta.log_path}
    assert Path(meta.log_path).parent.joinpath("exitcode").read_text().strip() == "0"
    _, lines = logs(conn, meta)
    assert lines == ["hello", "done"]

    [(labels, rss)] = wait_for(lambda: series(call(conn.get_metrics, meta), "rss_bytes"), what="rss samples")
    assert labels == {"pid": str(meta.pid)} and rss and all(v > 0 for _, v in rss)
    assert series(call(conn.get_metrics, meta), "cpu_percent")
    assert [r.metric for r in call(conn.get_metrics, meta, queries=["rss_bytes"]).results] == ["rss_bytes"]


def test_shell_env_cwd_and_failure(tmp_path: Path) -> None:
    conn = ShellConnector()
    meta = conn.create(None, str(tmp_path / "out"), {"command": 'echo "$GREETING from $(pwd)"; echo oops >&2; exit 3',
                                                      "env": {"GREETING": "hi"}, "cwd": str(tmp_path)})
    failed = wait_final(conn, meta)
    assert failed.phase == "FAILED" and failed.message == "exit code 3: oops"
    assert logs(conn, meta)[1] == [f"hi from {tmp_path}", "oops"]


def test_shell_status_from_another_process(tmp_path: Path) -> None:
    """Without the Popen (as in another server process), the exitcode file gives the status."""
    from connector_nb.examples import shell

    conn = ShellConnector()
    meta = conn.create(None, str(tmp_path), {"command": "exit 7"})
    assert wait_final(conn, meta).message == "exit code 7"
    with shell._PROCS_LOCK:
        shell._PROCS.pop(meta.pid)
    assert get(conn, meta).message == "exit code 7"


def test_shell_delete_kills_process_group(tmp_path: Path) -> None:
    conn = ShellConnector()
    meta = conn.create(None, str(tmp_path), {"command": "sleep 30 & sleep 30; wait"})
    wait_for(lambda: get(conn, meta).phase == "RUNNING", what="RUNNING")
    os.killpg(meta.pid, 0)  # the group exists
    conn.delete(meta)
    conn.delete(meta)  # idempotent

    wait_for(lambda: process_group_gone(meta.pid), what="process group to exit")
    aborted = get(conn, meta)
    assert aborted.phase == "ABORTED" and aborted.message == "cancelled by delete"
    conn.delete(meta)  # after the group is gone, too


def test_shell_rejects_bad_inputs(tmp_path: Path) -> None:
    conn = ShellConnector()
    for inputs in ({}, {"command": ""}, {"command": "true", "env": {"A": 1}}, {"command": "true", "cwd": "/nope"}):
        with pytest.raises(InputError):
            conn.create(None, str(tmp_path), inputs)


# ---------------------------------------------------------------------------------------------- sqlite


@pytest.fixture
def demo_db(tmp_path: Path) -> str:
    return make_demo_database(tmp_path / "demo.sqlite")


def read_csv(uri: str) -> list[dict[str, str]]:
    with open(uri, newline="") as f:
        return list(csv.DictReader(f))


def test_demo_database_is_deterministic(tmp_path: Path) -> None:
    a, b = make_demo_database(tmp_path / "a.db"), make_demo_database(tmp_path / "b.db")
    dump = [list(sqlite3.connect(p).execute("SELECT * FROM trips ORDER BY id")) for p in (a, b)]
    assert len(dump[0]) == 200 and dump[0] == dump[1]


def test_sqlite_query_succeeds_with_csv(demo_db: str, tmp_path: Path) -> None:
    from connector_nb.literals import StructuredDataset

    conn = SQLiteQueryConnector()
    query = "SELECT id, city, fare FROM trips WHERE distance_km > 10 ORDER BY id"
    meta = conn.create(template("sqlite_query"), str(tmp_path / "out"), {"database": demo_db, "query": query})
    done = wait_final(conn, SQLiteMeta.decode(meta.encode()))
    assert done.phase == "SUCCEEDED", done.message
    results = done.outputs["results"]
    assert isinstance(results, StructuredDataset) and results.format == "csv"
    expected = sqlite3.connect(demo_db).execute(query).fetchall()
    rows = read_csv(results.uri)
    assert len(rows) == len(expected) > 0 and done.custom_info["rows"] == len(expected)
    assert [int(r["id"]) for r in rows] == [e[0] for e in expected] and list(rows[0]) == ["id", "city", "fare"]
    assert Path(meta.job_dir, "status.json").exists()

    _, lines = logs(conn, meta)
    assert any("started query" in line for line in lines)
    assert any(f"fetched {len(expected)} rows" in line for line in lines)
    assert lines[-1].endswith("wrote results.csv")
    [(labels, points)] = series(call(conn.get_metrics, meta), "rows_fetched")
    assert labels == {"job_id": meta.job_id} and points[-1][1] == len(expected)


def test_sqlite_params_and_timeout_custom(demo_db: str, tmp_path: Path) -> None:
    conn = SQLiteQueryConnector()
    inputs = {"database": demo_db, "query": "SELECT * FROM trips WHERE city = :city", "params": {"city": "Paris"}}
    done = wait_final(conn, conn.create(template("sqlite_query", {"timeout": 30.0}), str(tmp_path), inputs))
    assert done.phase == "SUCCEEDED", done.message
    expected = sqlite3.connect(demo_db).execute("SELECT count(*) FROM trips WHERE city = 'Paris'").fetchone()[0]
    rows = read_csv(done.outputs["results"].uri)
    assert len(rows) == expected > 0 and {r["city"] for r in rows} == {"Paris"}
    with pytest.raises(InputError):
        conn.create(template("sqlite_query", {"timeout": -1}), str(tmp_path), inputs)


def test_sqlite_errors_fail_with_sqlite_message(demo_db: str, tmp_path: Path) -> None:
    conn = SQLiteQueryConnector()
    failed = wait_final(conn, conn.create(None, str(tmp_path), {"database": demo_db, "query": "SELECT * FROM foo"}))
    assert failed.phase == "FAILED" and failed.message == "no such table: foo"
    missing = {"database": str(tmp_path / "missing.db"), "query": "SELECT 1"}
    assert "unable to open database" in wait_final(conn, conn.create(None, str(tmp_path), missing)).message
    assert not (tmp_path / "missing.db").exists()


def test_sqlite_delete_interrupts_long_query(demo_db: str, tmp_path: Path) -> None:
    conn = SQLiteQueryConnector()
    # A recursive CTE that would run for a very long time unless interrupted.
    slow = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) "
            "SELECT count(*) FROM n")
    meta = conn.create(None, str(tmp_path), {"database": demo_db, "query": slow})
    wait_for(lambda: get(conn, meta).phase == "RUNNING", what="RUNNING")
    conn.delete(meta)
    conn.delete(meta)
    aborted = get(conn, meta)
    assert aborted.phase == "ABORTED" and aborted.message == "cancelled by delete"
    # The worker itself records ABORTED once sqlite returns from the interrupt.
    wait_for(lambda: '"ABORTED"' in Path(meta.job_dir, "status.json").read_text(), what="worker to stop")


def test_sqlite_timeout_fails(demo_db: str, tmp_path: Path) -> None:
    conn = SQLiteQueryConnector()
    slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) SELECT count(*) FROM n"
    meta = conn.create(template("sqlite_query", {"timeout": 0.2}), str(tmp_path), {"database": demo_db, "query": slow})
    failed = wait_final(conn, meta)
    assert failed.phase == "FAILED" and failed.message == "query timed out after 0.2 s"


def test_shell_delete_escalates_to_sigkill(tmp_path: Path) -> None:
    """A group that ignores SIGTERM (ignored signals survive exec) is SIGKILLed after the grace period."""
    conn = ShellConnector()
    meta = conn.create(None, str(tmp_path), {"command": "trap '' TERM; while true; do sleep 0.1; done"})
    wait_for(lambda: get(conn, meta).phase == "RUNNING", what="RUNNING")
    conn.delete(meta)

    wait_for(lambda: process_group_gone(meta.pid), what="process group to be killed")
    assert get(conn, meta).phase == "ABORTED"


# ------------------------------------------------------------------------------- confinement and forgery


def test_forged_sleep_metadata_is_refused(tmp_path: Path) -> None:
    conn = SleepConnector()
    real = conn.create(None, str(tmp_path), {"seconds": 30})
    forged = [
        SleepMeta(job_id="0123456789ab", started_at=0, seconds=1e12),  # the OOM: an unknown job
        SleepMeta(job_id=real.job_id, started_at=0, seconds=1e12, log_path=real.log_path),  # a real id, other fields
        SleepMeta(job_id="../../etc/passwd", started_at=real.started_at, seconds=30.0),
    ]
    for meta in forged:
        for method in (conn.get, conn.delete, conn.get_metrics):
            with pytest.raises(MetadataError):
                call(method, meta)
        with pytest.raises(MetadataError):
            logs(conn, meta)
    assert get(conn, real).phase in {"QUEUED", "RUNNING"}
    conn.delete(real)


def test_forged_shell_log_path_is_refused(tmp_path: Path) -> None:
    conn = ShellConnector()
    real = conn.create(None, str(tmp_path), {"command": "echo hi"})
    wait_final(conn, real)
    for change in ({"log_path": "/etc/shadow"}, {"log_path": str(Path(real.log_path).parent / ".." / "x.log")},
                   {"metrics_path": "/etc/passwd"}, {"pid": 1}):
        forged = ShellMeta(**{**vars(real), **change})
        with pytest.raises(MetadataError, match="does not match|no job|job id"):
            logs(conn, forged)
        with pytest.raises(MetadataError):
            call(conn.get_metrics, forged)
    assert logs(conn, real)[1] == ["hi"]


def test_forged_sqlite_job_dir_is_refused(demo_db: str, tmp_path: Path) -> None:
    conn = SQLiteQueryConnector()
    real = conn.create(None, str(tmp_path / "out"), {"database": demo_db, "query": "SELECT 1"})
    wait_final(conn, real)
    forged = SQLiteMeta(job_id=real.job_id, job_dir="/etc", database=real.database)
    with pytest.raises(MetadataError, match="does not match"):
        get(conn, forged)
    with pytest.raises(MetadataError):
        conn.delete(forged)


def test_one_log_call_is_bounded_even_for_a_huge_job(tmp_path: Path) -> None:
    from connector_nb.helpers import MAX_LOG_LINES

    conn = SleepConnector()
    meta = conn.create(None, str(tmp_path), {"seconds": MAX_SECONDS})
    # A job that has been running for ~11 days has ~2 million tick lines; pretend so in both record and meta.
    old = SleepMeta(**{**vars(meta), "started_at": meta.started_at - 1e6})
    conn.jobs.save(meta.job_id, {**vars(old), "cancelled_at": None})
    token, first = logs(conn, old, lines=10**9)
    assert len(first) == MAX_LOG_LINES and token == str(MAX_LOG_LINES)
    token2, second = logs(conn, old, token=token, lines=3)
    assert second == [f"[t={k * 0.5:.2f}s] tick {k}" for k in range(MAX_LOG_LINES - 1, MAX_LOG_LINES + 2)]
    assert token2 == str(MAX_LOG_LINES + 3)
    [(_, points)] = series(call(conn.get_metrics, old), "progress")
    assert len(points) <= 10_001
    with pytest.raises(InputError, match="sleep: input 'seconds' must be between"):
        conn.create(None, str(tmp_path), {"seconds": MAX_SECONDS * 2})
    for bad in ("-1", "abc", "1e999"):
        with pytest.raises(InputError, match="log token"):
            logs(conn, old, token=bad)


def test_sleep_cancel_survives_the_process_that_made_it(tmp_path: Path, state_home: Path) -> None:
    """Like an external system: a job cancelled by one process is ABORTED for the next, not SUCCEEDED."""
    script = (
        "import sys; from connector_nb.examples import SleepConnector\n"
        "c = SleepConnector(); m = c.create(None, sys.argv[1], {'seconds': 0.5}); c.delete(m)\n"
        "sys.stdout.write(m.encode().decode())\n"
    )
    env = {**os.environ, "CONNECTOR_NB_HOME": str(state_home)}
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    meta = SleepMeta.decode(out.encode())
    conn = SleepConnector()  # a different process's connector: no shared memory with the one that cancelled
    wait_for(lambda: time.time() - meta.started_at > meta.seconds, what="the sleep's planned end")
    aborted = get(conn, meta)
    assert aborted.phase == "ABORTED" and aborted.message == "cancelled by delete"
    assert logs(conn, meta)[1][-1].endswith("cancelled by delete")
    records = list((state_home / "jobs" / "sleep").iterdir())
    assert len(records) == 1 and oct(records[0].stat().st_mode & 0o777) == "0o600"
    assert oct((state_home / "jobs").stat().st_mode & 0o777) == "0o700"


def test_shell_job_gets_a_scrubbed_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVER_ONLY_TOKEN", "must-not-leak-123")
    conn = ShellConnector()
    meta = conn.create(None, str(tmp_path), {"command": "env", "env": {"MINE": "yes"}})
    assert wait_final(conn, meta).phase == "SUCCEEDED"
    names = {line.split("=", 1)[0] for line in logs(conn, meta)[1]}
    assert "SERVER_ONLY_TOKEN" not in names and "CONNECTOR_NB_HOME" not in names
    assert {"PATH", "MINE"} <= names and names - {"PWD", "SHLVL", "_", "OLDPWD"} <= {*BASE_ENV, "MINE"}


def test_shell_logs_mask_secret_named_env_values(tmp_path: Path) -> None:
    conn = ShellConnector()
    meta = conn.create(None, str(tmp_path), {"command": 'echo "k=$API_KEY"; echo $API_KEY >&2; exit 2',
                                             "env": {"API_KEY": "sk-live-0987"}})
    failed = wait_final(conn, meta)
    assert failed.message == "exit code 2: ••••"
    assert logs(conn, meta)[1] == ["k=••••", "••••"]
    assert "sk-live-0987" in Path(meta.log_path).read_text()  # the job really printed it; masking is on the way out


def test_sqlite_is_read_only_unless_write_is_asked(demo_db: str, tmp_path: Path) -> None:
    conn = SQLiteQueryConnector()
    insert = {"database": demo_db, "query": "INSERT INTO cities VALUES ('Oslo', 'NO')"}
    failed = wait_final(conn, conn.create(None, str(tmp_path), insert))
    assert failed.phase == "FAILED" and "readonly" in failed.message
    done = wait_final(conn, conn.create(None, str(tmp_path), {**insert, "write": True}))
    assert done.phase == "SUCCEEDED", done.message
    assert sqlite3.connect(demo_db).execute("SELECT country FROM cities WHERE name = 'Oslo'").fetchone() == ("NO",)
    with pytest.raises(InputError, match="'write' must be a bool"):
        conn.create(None, str(tmp_path), {**insert, "write": "yes"})


@pytest.mark.parametrize("query", [
    "ATTACH DATABASE '{out}/attached.db' AS other",
    "VACUUM INTO '{out}/copy.db'",
    "VACUUM",
    "SELECT load_extension('{out}/evil')",
])
def test_sqlite_authorizer_denies_reaching_other_files(demo_db: str, tmp_path: Path, query: str) -> None:
    conn = SQLiteQueryConnector()
    write = query == "VACUUM"  # even with writing allowed
    meta = conn.create(None, str(tmp_path / "o"), {"database": demo_db, "query": query.format(out=tmp_path),
                                                   "write": write})
    failed = wait_final(conn, meta)
    assert failed.phase == "FAILED" and "authoriz" in failed.message
    assert not (tmp_path / "attached.db").exists() and not (tmp_path / "copy.db").exists()


def test_sqlite_database_root_and_uris(demo_db: str, tmp_path: Path) -> None:
    inside = SQLiteQueryConnector(database_root=str(tmp_path))
    assert wait_final(inside, inside.create(None, str(tmp_path), {"database": demo_db, "query": "SELECT 1"})
                      ).phase == "SUCCEEDED"
    other_root = tmp_path / "only-here"
    other_root.mkdir()
    confined = SQLiteQueryConnector(database_root=str(other_root))
    for database in (demo_db, str(other_root / ".." / "demo.sqlite")):
        with pytest.raises(InputError, match="must be under"):
            confined.create(None, str(tmp_path), {"database": database, "query": "SELECT 1"})
    for database in (f"file:{demo_db}?mode=rwc", ":memory:"):
        with pytest.raises(InputError, match="plain file path"):
            inside.create(None, str(tmp_path), {"database": database, "query": "SELECT 1"})


def test_output_prefix_never_escapes_its_base(tmp_path: Path) -> None:
    base = tmp_path / "outputs"
    base.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (base / "link").symlink_to(tmp_path / "elsewhere")
    assert safe_output_dir("run1", base) == (base / "run1").resolve()
    assert safe_output_dir(f"file://{base}/run2", base) == (base / "run2").resolve()
    for bad in ("../escape", f"{base}/../escape", f"file://{base}/../x", "/etc", "link/inside", "s3://b/x", ""):
        with pytest.raises(InputError):
            safe_output_dir(bad, base)
    with pytest.raises(InputError, match="must not contain '..'"):
        safe_output_dir(str(tmp_path / "a" / ".." / "b"))
    # Served examples (for_serving / an output root) place an outside absolute prefix under their root.
    served = for_serving(tmp_path / "served", allow_shell=True)
    assert [c.task_type_name for c in served] == ["sleep", "sqlite_query", "shell"]
    assert [c.task_type_name for c in for_serving(tmp_path / "served")] == ["sleep", "sqlite_query"]
    db = make_demo_database(tmp_path / "served" / "databases" / "demo.sqlite")
    inputs = {"sleep": {"seconds": 0}, "shell": {"command": "true"},
              "sqlite_query": {"database": db, "query": "SELECT 1"}}
    for conn in served:
        meta = conn.create(None, str(tmp_path / "elsewhere"), inputs[conn.task_type_name])
        assert wait_final(conn, meta).phase == "SUCCEEDED"
        with pytest.raises(InputError, match="must not contain '..'|outside the allowed output root"):
            conn.create(None, str(tmp_path / "served" / "outputs" / "a" / ".."), inputs[conn.task_type_name])
    assert not any((tmp_path / "elsewhere").iterdir())
    written = tmp_path / "served" / "outputs" / str(tmp_path / "elsewhere").lstrip("/")
    assert len(list(written.iterdir())) == 3
    assert oct((tmp_path / "served" / "outputs").stat().st_mode & 0o777) == "0o700"
    with pytest.raises(InputError, match="must be under"):
        served[1].create(None, "x", {"database": str(tmp_path / "demo.sqlite"), "query": "SELECT 1"})
    (base / "link2").symlink_to(tmp_path / "elsewhere")
    rerooted = safe_output_dir(str(base / "link2" / "x"), base, reroot=True)  # through a symlink out: re-rooted
    assert rerooted.is_relative_to(base.resolve()) and not any((tmp_path / "elsewhere").iterdir())


def test_read_page_bounds_huge_lines_and_pages(tmp_path: Path) -> None:
    from connector_nb.helpers import MAX_LINE, MAX_LOG_LINES, read_page

    log = tmp_path / "big.log"
    log.write_text("first\n" + "x" * (MAX_LINE * 5 + 7) + "\nthird\n" + "\n".join(f"l{i}" for i in range(20_000)))
    lines, token = read_page(log, "", 3)
    assert lines == ["first", "x" * MAX_LINE, "third"] and token == "3"
    lines, token = read_page(log, token, 0)
    assert len(lines) == MAX_LOG_LINES and lines[0] == "l0" and token == str(3 + MAX_LOG_LINES)
    assert read_page(tmp_path / "missing.log", "5") == ([], "5")


def test_job_store_prunes_old_records(tmp_path: Path) -> None:
    from connector_nb.helpers import JobStore

    store = JobStore("demo", root=tmp_path / "jobs")
    store.save("old", {"n": 1})
    old = store.directory / "old.json"
    os.utime(old, (time.time() - JobStore.RETENTION - 10,) * 2)
    store.save("new", {"n": 2})
    assert store.prune() == 1 and not old.exists() and store.load("new") == {"n": 2}
    fresh = JobStore("demo", root=tmp_path / "jobs")
    os.utime(store.directory / "new.json", (time.time() - JobStore.RETENTION - 10,) * 2)
    fresh.save("newer", {"n": 3})  # the first save of a process prunes
    assert sorted(p.name for p in fresh.directory.iterdir()) == ["newer.json"]
    with pytest.raises(MetadataError, match="no job 'old'"):
        store.load("old")
