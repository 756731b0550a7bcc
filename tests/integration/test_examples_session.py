"""The example connectors through a real Session: real subprocesses, real SQLite, real files."""

from __future__ import annotations

import pytest

from connector_nb import Session
from connector_nb.examples import make_demo_database
from connector_nb.testing import phases, process_group_gone, wait_until


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    """The examples' job records go to a per-test state directory, never the user's."""
    monkeypatch.setenv("CONNECTOR_NB_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def session(tmp_path):
    s = Session(output_dir=str(tmp_path))  # the default registry: discovered through the entry point
    yield s
    s.close(cancel_running=True)


def test_bare_session_offers_the_examples(session):
    offered = {c.task_type for c in session.connectors()}
    assert {"sleep", "shell", "sqlite_query"} <= offered


def test_sleep_moves_through_phases_with_logs_metrics_outputs(session):
    run = session.launch("sleep", seconds=0.6)
    assert run.wait(timeout=20).phase == "SUCCEEDED"
    assert phases(run.transitions) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert run.outputs == {"slept": 0.6}
    assert "tick 1" in run.logs()
    frame = run.metrics()
    assert set(frame["metric"]) == {"progress"} and frame["value"].max() <= 1.0


def test_sleep_failure_and_many_at_once(session):
    runs = session.launch_many("sleep", [{"seconds": 0.3, "fail": i % 2 == 1} for i in range(20)])
    for run in runs:
        run.wait(timeout=20)
    assert [r.phase for r in runs] == ["SUCCEEDED", "FAILED"] * 10
    assert "fail=True" in runs[1].message


def test_shell_runs_a_real_process_and_cancel_kills_its_group(session):
    ok = session.launch("shell", command="echo hello; sleep 0.3; echo done")
    assert ok.wait(timeout=20).phase == "SUCCEEDED"
    assert ok.logs().lines[:2] == ["hello", "done"]
    assert ok.outputs["returncode"] == 0
    bad = session.launch("shell", command="echo oops >&2; exit 3")
    assert bad.wait(timeout=20).phase == "FAILED" and "exit code 3" in bad.message
    long = session.launch("shell", command="sleep 60")
    wait_until(lambda: long.phase == "RUNNING", what="RUNNING")
    pid = session.get_run(long.run_id).resource_meta
    pid = int(__import__("json").loads(pid)["pid"])
    long.cancel()
    assert long.phase == "ABORTED"
    wait_until(lambda: process_group_gone(pid), timeout=10, what="the process group to be killed")
    long.cancel()  # idempotent


def test_shell_metrics_are_process_samples(session):
    run = session.launch("shell", command="python3 -c 'import time; x = bytearray(20_000_000); time.sleep(0.8)'")
    run.wait(timeout=20)
    frame = run.metrics()
    assert {"cpu_percent", "rss_bytes"} <= set(frame["metric"])
    assert frame[frame.metric == "rss_bytes"]["value"].max() > 10_000_000


def test_sqlite_query_result_is_a_dataframe(session, tmp_path):
    import sqlite3

    db = make_demo_database(tmp_path / "demo.sqlite3")
    query = "SELECT city, COUNT(*) AS n FROM trips WHERE fare > :min_fare GROUP BY city ORDER BY city"
    run = session.launch("sqlite_query", database=db, query=query, params={"min_fare": 10})
    assert run.wait(timeout=20).phase == "SUCCEEDED"
    frame = run.outputs["results"]
    expected = sqlite3.connect(db).execute(query, {"min_fare": 10}).fetchall()
    assert [tuple(r) for r in frame.itertuples(index=False)] == expected
    failed = session.launch("sqlite_query", database=db, query="SELECT * FROM nope")
    assert failed.wait(timeout=20).phase == "FAILED" and "no such table: nope" in failed.message


def test_a_failing_run_does_not_disturb_others(session, tmp_path):
    db = make_demo_database(tmp_path / "demo.sqlite3")
    runs = [session.launch("sleep", seconds=0.4), session.launch("sqlite_query", database=db, query="garbage"),
            session.launch("shell", command="exit 1"), session.launch("sleep", seconds=0.2)]
    for run in runs:
        run.wait(timeout=20)
    assert [r.phase for r in runs] == ["SUCCEEDED", "FAILED", "FAILED", "SUCCEEDED"]


def test_sigterm_is_not_left_behind(session):
    run = session.launch("shell", command="trap '' TERM; sleep 30")  # ignores SIGTERM: needs SIGKILL
    wait_until(lambda: run.phase == "RUNNING", what="RUNNING")
    meta = __import__("json").loads(session.get_run(run.run_id).resource_meta)
    run.cancel()
    wait_until(lambda: process_group_gone(meta["pid"]), timeout=15, what="SIGKILL after SIGTERM was ignored")


def test_a_cancelled_sleep_stays_aborted_for_a_new_process(session, state_home):
    """The example behaves like an external system: another process (a new kernel) sees the cancellation."""
    import json
    import os
    import subprocess
    import sys

    run = session.launch("sleep", seconds=1.0)
    wait_until(lambda: run.phase == "RUNNING", what="RUNNING")
    run.cancel()
    assert run.phase == "ABORTED"
    meta = session.get_run(run.run_id).resource_meta
    script = (
        "import asyncio, sys; from connector_nb.examples import SleepConnector, SleepMeta\n"
        "from connector_nb.testing import wait_until\n"
        "meta = SleepMeta.decode(sys.stdin.buffer.read()); conn = SleepConnector()\n"
        "import time; wait_until(lambda: time.time() > meta.started_at + meta.seconds, what='planned end')\n"
        "print(asyncio.run(conn.get(meta)).phase)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], input=meta, capture_output=True, check=True, timeout=60,
                         env={**os.environ, "CONNECTOR_NB_HOME": str(state_home)}).stdout
    assert out.decode().strip() == "ABORTED"
    assert json.loads(meta)["job_id"] in {p.stem for p in (state_home / "jobs" / "sleep").iterdir()}
