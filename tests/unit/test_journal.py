"""The run journal: real SQLite files under tmp_path, real writer threads, real (and really killed) processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from flyteidl.core import tasks_pb2

from connector_nb import journal as journal_module
from connector_nb.errors import InputError, JournalError, JournalVersionError, UnknownRunError
from connector_nb.journal import SCHEMA_VERSION, Journal, default_home
from connector_nb.testing import wait_until

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def intent(journal: Journal, run_id: str, started: float = 0, **over: object) -> None:
    fields: dict[str, object] = dict(run_id=run_id, task_type="sleep", version=1, target="local",
                                     inputs={"n": 1}, template=b"", output_prefix="/tmp/out", started_at=at(started))
    fields.update(over)
    journal.intent(**fields)  # type: ignore[arg-type]


def run_child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (another process sharing the journal file)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def journal(tmp_path):
    with Journal(tmp_path / "journal.sqlite3") as j:
        yield j


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- files -------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_default_home_is_private_including_wal_and_shm(tmp_path, monkeypatch, umask):
    home = tmp_path / "state"
    home.mkdir(mode=0o755)
    monkeypatch.setenv("CONNECTOR_NB_HOME", str(home))
    old = os.umask(umask)
    try:
        with Journal() as j:
            intent(j, "r1")
            assert j.path == home / "journal.sqlite3"
            assert mode(home) == 0o700
            for suffix in ("", "-wal", "-shm"):
                assert mode(Path(f"{j.path}{suffix}")) == 0o600, suffix
    finally:
        os.umask(old)


def test_old_files_are_tightened_and_new_parent_folders_private(tmp_path):
    path = tmp_path / "new" / "journal.sqlite3"
    path.parent.mkdir(mode=0o755)
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    with Journal(path) as j:
        intent(j, "r1")
        assert mode(path) == 0o600
    assert mode(path.parent) == 0o755  # a folder the user made is theirs: not changed
    with Journal(tmp_path / "made" / "by" / "us.sqlite3"):
        assert mode(tmp_path / "made" / "by") == 0o700


def test_default_home_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CONNECTOR_NB_HOME", str(tmp_path / "explicit"))
    assert default_home() == tmp_path / "explicit"
    monkeypatch.delenv("CONNECTOR_NB_HOME")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_home() == tmp_path / "xdg" / "connector_nb"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert default_home() == tmp_path / "me" / ".local" / "state" / "connector_nb"


# -- durability --------------------------------------------------------------------------------
def test_intent_is_visible_to_another_process_as_soon_as_it_returns(journal):
    intent(journal, "r1", inputs={"n": 7})
    child = run_child("""
        import sqlite3, sys
        row = sqlite3.connect(sys.argv[1]).execute("SELECT phase, pid, inputs FROM runs WHERE run_id='r1'").fetchone()
        print(row)
    """, str(journal.path))
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == repr(("CREATING", os.getpid(), '{"n": 7}'))


KILLED_CHILD = """
    import os, signal, sys
    from datetime import datetime, timezone
    from connector_nb.journal import Journal
    j = Journal(sys.argv[1])
    now = datetime.now(timezone.utc)
    for i in range(4):
        j.intent(run_id=f"k{i}", task_type="sleep", version=1, target="local", inputs={"i": i}, template=b"",
                 output_prefix="", started_at=now)
    j.created("k0", b"meta-0")
    j.transition("k0", "RUNNING", "first", now)
    j.transition("k1", "RUNNING", "only", now)
    j.flush()
    j.transition("k0", "RUNNING", "maybe lost", now)
    j.created("k3", b"meta-3")  # create returned just before the kill: its handle must survive
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_sigkill_right_after_writing_leaves_intents_and_flushed_transitions(tmp_path):
    path = tmp_path / "journal.sqlite3"
    child = run_child(KILLED_CHILD, str(path))
    assert child.returncode == -signal.SIGKILL, child.stderr
    with Journal(path) as j:
        k0 = j.get("k0")
        assert k0["resource_meta"] == b"meta-0"
        assert [t["message"] for t in k0["transitions"]][:2] == ["created", "first"]
        assert j.get("k1")["phase"] == "RUNNING"
        assert j.get("k2")["phase"] == "CREATING"  # killed "during create": only the intent
        assert (j.get("k3")["phase"], j.get("k3")["resource_meta"]) == ("QUEUED", b"meta-3")
        orphans = j.unfinished(exclude_pid=os.getpid())
        assert {r["run_id"] for r in orphans} == {"k0", "k1", "k2", "k3"}
        assert {r["pid"] for r in orphans} == {child_pid(j)}


def child_pid(j: Journal) -> int:
    pids = {r["pid"] for r in j.unfinished()}
    assert len(pids) == 1 and os.getpid() not in pids
    return pids.pop()


def test_writes_queued_at_normal_exit_are_flushed_by_atexit(tmp_path):
    path = tmp_path / "journal.sqlite3"
    child = run_child("""
        import sys
        from datetime import datetime, timezone
        from connector_nb.journal import Journal
        j = Journal(sys.argv[1])
        now = datetime.now(timezone.utc)
        j.intent(run_id="e", task_type="t", version=1, target="local", inputs={}, template=b"", output_prefix="",
                 started_at=now)
        for i in range(500):
            j.transition("e", "RUNNING", f"poll {i}", now)
        j.transition("e", "SUCCEEDED", "done", now)
    """, str(path))
    assert child.returncode == 0, child.stderr
    with Journal(path) as j:
        assert j.get("e")["phase"] == "SUCCEEDED" and len(j.history("e")) == 501


def test_async_intents_and_created_are_committed_when_awaited(journal):
    async def launch(i: int) -> None:
        await journal.intent_async(run_id=f"a{i}", task_type="t", version=1, target="local",
                                   inputs={"i": i, "token": f"tok-{i:04d}"}, template=b"", output_prefix="",
                                   started_at=at(i))
        await journal.created_async(f"a{i}", f"meta-{i}".encode())

    async def main() -> None:
        await launch(7)
        with pytest.raises(ValueError, match="run_id 'a7' is already in the journal"):
            await launch(7)
        # the last thing awaited: nothing after it could be what commits it
        await asyncio.gather(*(launch(i) for i in range(300) if i != 7))  # waiting together, they share commits

    asyncio.run(main())
    with closing(sqlite3.connect(journal.path)) as other:  # another connection, at once (the writer lingers 20 ms)
        counts = other.execute("SELECT count(*), count(resource_meta) FROM runs WHERE phase = 'QUEUED'").fetchone()
    assert counts == (300, 300)
    assert journal.get("a7")["inputs"] == {"i": 7, "token": "••••"} and journal.get("a7")["resource_meta"] == b"meta-7"
    raw = journal.path.read_bytes() + Path(f"{journal.path}-wal").read_bytes()
    assert b"tok-0" not in raw


def test_two_processes_write_one_journal_at_the_same_time(tmp_path):
    path = tmp_path / "journal.sqlite3"
    code = """
        import sys
        from datetime import datetime, timezone
        from connector_nb.journal import Journal
        j = Journal(sys.argv[1])
        now = datetime.now(timezone.utc)
        for i in range(300):
            run_id = f"{sys.argv[2]}-{i}"
            j.intent(run_id=run_id, task_type="t", version=1, target="local", inputs={"i": i}, template=b"",
                     output_prefix="", started_at=now)
            j.created(run_id, b"m")
            for phase in ("RUNNING", "RUNNING", "RUNNING", "SUCCEEDED"):
                j.transition(run_id, phase, "", now)
        j.close()
    """
    children = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(path), name],
                                 stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    with Journal(path) as j:
        frame = j.frame()
        assert len(frame) == 600 and set(frame["phase"]) == {"SUCCEEDED"}
        assert [t["phase"] for t in j.history("b-299")] == ["QUEUED", "RUNNING", "RUNNING", "RUNNING", "SUCCEEDED"]
        assert j.unfinished() == []


def test_transitions_from_many_threads_all_land(journal):
    for n in range(8):
        intent(journal, f"t{n}")

    def write(n: int) -> None:
        for i in range(400):
            journal.transition(f"t{n}", "RUNNING", f"{i}", at(i))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n in range(8):
        assert [t["message"] for t in journal.history(f"t{n}")] == [str(i) for i in range(400)]
    assert journal.dropped == 0


def test_the_writer_thread_checkpoints_the_wal_into_the_database(journal, tmp_path):
    for i in range(50):
        intent(journal, f"r{i}")
        journal.transition(f"r{i}", "RUNNING", "", at(1))
    journal.flush()

    def rows_in_database_file() -> int:
        copy = tmp_path / "copy.sqlite3"
        copy.write_bytes(journal.path.read_bytes())  # the database file alone: what its WAL holds is not there
        with closing(sqlite3.connect(copy)) as db:
            try:
                return int(db.execute("SELECT count(*) FROM transitions").fetchone()[0])
            except sqlite3.DatabaseError:  # no tables yet, or a copy taken mid-checkpoint
                return -1

    wait_until(lambda: rows_in_database_file() == 50, timeout=30, interval=0.1, what="a background checkpoint")
    assert journal.get("r49")["phase"] == "RUNNING"


# -- rules -------------------------------------------------------------------------------------
def test_a_terminal_run_is_never_reopened_or_rewritten(journal, tmp_path):
    intent(journal, "r1")
    journal.created("r1", b"meta")
    journal.transition("r1", "RUNNING", "working", at(1))
    journal.transition("r1", "SUCCEEDED", "done", at(2))
    journal.transition("r1", "RUNNING", "zombie", at(3))  # same batch as the terminal one, or a later one
    journal.flush()
    journal.created("r1", b"other-meta")
    journal.outcome_unknown("r1", "late")
    journal.create_failed("r1", "late")
    with Journal(journal.path) as other:  # another connection (as another process would be) cannot reopen it
        other.transition("r1", "QUEUED", "again", at(4))
    row = journal.get("r1")
    assert (row["phase"], row["message"], row["ended_at"]) == ("SUCCEEDED", "done", at(2))
    assert (row["resource_meta"], row["unknown_outcome"]) == (b"meta", False)
    assert [t["phase"] for t in row["transitions"]] == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert journal.unfinished() == []


def test_history_is_append_only_and_keeps_flags(journal):
    intent(journal, "r1")
    journal.created("r1", b"meta")
    journal.transition("r1", "RUNNING", "a", at(1))
    journal.transition("r1", "QUEUED", "b", at(2), flag="backwards")
    journal.transition("r1", "RUNNING", "c", at(3))
    journal.transition("r1", "QUEUED", "d", at(4), flag="backwards")
    history = journal.history("r1")
    assert [(t["phase"], t["message"], t["flag"]) for t in history[1:]] == [
        ("RUNNING", "a", ""), ("QUEUED", "b", "backwards"), ("RUNNING", "c", ""), ("QUEUED", "d", "backwards")]
    assert history[2]["at"] == at(2).isoformat(timespec="microseconds")
    row = journal.get("r1")
    assert row["flags"] == ["backwards"] and row["phase"] == "QUEUED" and row["ended_at"] is None
    raw = sqlite3.connect(journal.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("UPDATE transitions SET message = 'rewritten'")
    raw.close()


def test_times_written_by_sqlite_read_back_as_the_exact_iso_text(journal):
    # The writer sends epoch seconds and microseconds; SQLite formats them. Text order must stay time order.
    times = [datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc), datetime(1970, 1, 1),
             datetime(2026, 3, 4, 5, 6, 7, 1, tzinfo=timezone(timedelta(hours=-7, minutes=-30))),
             datetime(2038, 1, 19, 3, 14, 8, 500_000, tzinfo=timezone.utc), datetime(9999, 12, 31, 23, 59, 59)]
    intent(journal, "r1", started_at=times[0])
    journal.created("r1", b"meta")
    for n, when in enumerate(times[1:]):
        journal.transition("r1", "RUNNING", str(n), when)
    expected = [journal_module._iso(t) for t in times]
    history = journal.history("r1")  # reads after a flush: the raw read below sees the same rows
    with closing(sqlite3.connect(journal.path)) as raw:
        assert raw.execute("SELECT started_at FROM runs").fetchone()[0] == expected[0]
    assert journal.get("r1")["started_at"] == times[0]
    assert [t["at"] for t in history[1:]] == expected[1:]
    assert history[0]["message"] == "created" and history[0]["at"] <= journal_module._iso(datetime.now(timezone.utc))
    assert expected[2] == "2026-03-04T12:36:07.000001+00:00"


def test_create_outcomes(journal):
    intent(journal, "ok", started=1)
    intent(journal, "unknown", started=2, inputs={"password": "pa55word-X"})
    intent(journal, "failed", started=3)
    intent(journal, "dying", started=4)
    journal.created("ok", b"meta")
    journal.outcome_unknown("unknown", "deadline of 5 s passed; echo pa55word-X")
    journal.create_failed("failed", "quota exceeded")
    unknown = journal.get("unknown")
    assert unknown["unknown_outcome"] and unknown["phase"] == "CREATING" and unknown["resource_meta"] is None
    assert "pa55word-X" not in unknown["message"] and "deadline of 5 s" in unknown["message"]
    failed = journal.get("failed")
    assert failed["phase"] == "FAILED" and failed["message"] == "create failed: quota exceeded"
    assert [r["run_id"] for r in journal.unfinished()] == ["dying", "unknown", "ok"]  # newest first


def test_unfinished_skips_the_live_process_and_frame_summarises(journal):
    child = run_child("""
        import sys
        from datetime import datetime, timezone
        from connector_nb.journal import Journal
        with Journal(sys.argv[1]) as j:
            j.intent(run_id="theirs", task_type="shell", version=1, target="grpc://127.0.0.1:1", inputs={},
                     template=b"", output_prefix="", started_at=datetime(2026, 1, 2, tzinfo=timezone.utc))
    """, str(journal.path))
    assert child.returncode == 0, child.stderr
    intent(journal, "mine", started=10)
    intent(journal, "finished", started=20)
    journal.transition("finished", "ABORTED", "cancelled", at(30))
    assert [r["run_id"] for r in journal.unfinished()] == ["mine", "theirs"]
    assert [r["run_id"] for r in journal.unfinished(exclude_pid=os.getpid())] == ["theirs"]
    journal.claim("theirs")  # reattached here: now this process's own
    assert journal.unfinished(exclude_pid=os.getpid()) == []

    frame = journal.frame()
    assert list(frame.columns) == ["run_id", "task_type", "target", "age", "phase", "unknown_outcome", "started_at",
                                   "ended_at", "message"]
    assert list(frame["run_id"]) == ["finished", "mine", "theirs"]
    assert str(frame["started_at"].dt.tz) == "UTC" and frame["ended_at"][0] == at(30)
    assert frame["age"][0] > timedelta(0) and frame["age"][2] > frame["age"][0]
    assert list(journal.frame(unfinished_only=True)["run_id"]) == ["mine", "theirs"]
    assert list(journal.frame(limit=1)["run_id"]) == ["finished"]
    assert journal.frame(limit=0).empty


def test_orphans_only_skips_runs_of_processes_still_alive(journal):
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys
        from datetime import datetime, timezone
        from connector_nb.journal import Journal
        with Journal(sys.argv[1]) as j:
            j.intent(run_id="alive", task_type="t", version=1, target="local", inputs={}, template=b"",
                     output_prefix="", started_at=datetime.now(timezone.utc))
            print("ready", flush=True)
            sys.stdin.readline()  # another notebook, still open
    """), str(journal.path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        assert [r["run_id"] for r in journal.unfinished()] == ["alive"]
        assert journal.unfinished(orphans_only=True) == []
    finally:
        child.communicate("bye\n", timeout=60)
    assert [r["run_id"] for r in journal.unfinished(orphans_only=True)] == ["alive"]  # its process is gone
    intent(journal, "old", started=0)  # started long before this process: mine only if claimed since
    assert [r["run_id"] for r in journal.unfinished(orphans_only=True)] == ["alive", "old"]
    journal.claim("old")
    assert [r["run_id"] for r in journal.unfinished(orphans_only=True)] == ["alive"]


def test_unknown_id_lists_the_ten_most_recent(journal):
    for i in range(12):
        intent(journal, f"run-{i:02d}", started=i)
    with pytest.raises(UnknownRunError) as info:
        journal.get("nope")
    message = str(info.value)
    assert message.startswith("no run 'nope' in the journal at")
    assert all(f"run-{i:02d}" in message for i in range(2, 12)) and "run-00" not in message
    assert message.index("run-11") < message.index("run-02")
    with pytest.raises(UnknownRunError, match="no run 'gone'"):
        journal.history("gone")


def test_reads_see_this_objects_own_writes_without_a_flush(journal):
    intent(journal, "r1")
    for i in range(50):
        journal.transition("r1", "RUNNING", str(i), at(i))
    assert journal.get("r1")["message"] == "49"


# -- secrets -----------------------------------------------------------------------------------
def test_secrets_never_reach_the_file(tmp_path):
    path = tmp_path / "journal.sqlite3"
    template = tasks_pb2.TaskTemplate(type="query")
    template.custom.update({"token": "SECRET-custom-1", "conn": {"password": "SECRET-custom-2"},
                            "echo": "uses SECRET-input-1 inline", "sql": "select 1"})
    template.config["api_key"] = "SECRET-config-1"
    template.config["region"] = "eu"
    with Journal(path) as j:
        intent(j, "r1", inputs={"api_token": "SECRET-input-1", "db": {"password": "SECRET-input-2"}, "n": 3},
               template=template.SerializeToString())
        j.created("r1", json.dumps({"job": 1, "auth_token": "SECRET-meta-1"}).encode())
        j.transition("r1", "FAILED", "bad credentials SECRET-input-1 / SECRET-input-2", at(1))
        intent(j, "r2", inputs={"api_token": "SECRET-input-3"})
        j.created("r2", b'{"job": 2, "note": "SECRET-input-3"}')  # the input's value, under a harmless name
        j.flush()
        raw = path.read_bytes() + Path(f"{path}-wal").read_bytes()
        assert b"SECRET" not in raw
        row = j.get("r1")
        kept = tasks_pb2.TaskTemplate.FromString(row["template"])
        assert kept.custom["sql"] == "select 1" and kept.config["region"] == "eu"
        assert kept.custom["token"] == "••••" and kept.custom["echo"] == "uses •••• inline"
        assert row["inputs"] == {"api_token": "••••", "db": {"password": "••••"}, "n": 3}
        assert row["resource_meta"] is None and j.get("r2")["resource_meta"] is None
        assert row["message"] == "bad credentials •••• / ••••"
    assert b"SECRET" not in path.read_bytes()


def test_values_remembered_by_secrets_mask_are_masked_too(journal, monkeypatch):
    monkeypatch.setattr(journal_module._secrets, "mask", lambda text: text.replace("s3cr3t", "••••"),
                        raising=False)
    intent(journal, "r1", inputs={"query": "uses s3cr3t"})
    journal.transition("r1", "RUNNING", "echo s3cr3t", at(1))
    journal.flush()
    assert b"s3cr3t" not in journal.path.read_bytes() + Path(f"{journal.path}-wal").read_bytes()


def test_text_found_clean_is_masked_once_its_secret_is_remembered(journal):
    # the journal remembers texts and templates it found clean; remembering a secret must undo that
    template = tasks_pb2.TaskTemplate(type="query")
    template.custom.update({"sql": "select 'later-secret-77'"})
    for run_id in ("before", "after"):
        intent(journal, run_id, inputs={}, template=template.SerializeToString())
        journal.transition(run_id, "RUNNING", "sent later-secret-77", at(1))
        journal.flush()
        if run_id == "before":
            assert journal.get("before")["message"] == "sent later-secret-77"
            journal_module._secrets.remember("later-secret-77")
    try:
        row = journal.get("after")
        assert row["message"] == "sent ••••"
        assert tasks_pb2.TaskTemplate.FromString(row["template"]).custom["sql"] == "select '••••'"
    finally:
        journal_module._secrets.forget_all()


@pytest.mark.parametrize("statement_bytes", [8 * 2**20, 300], ids=["one statement", "in halves"])
def test_one_batch_refuses_only_its_duplicate_and_keeps_every_blob(journal, monkeypatch, statement_bytes):
    monkeypatch.setattr(journal_module, "_STATEMENT_BYTES", statement_bytes)  # 300: a few rows per statement
    intent(journal, "old")
    templates = {f"b{i}": tasks_pb2.TaskTemplate(type=f"t{i}" * i).SerializeToString() for i in range(40)}

    async def main() -> list[BaseException | None]:
        ids = [f"b{i}" for i in range(40)] + ["b3", "old"]
        results = await asyncio.gather(*(journal.intent_async(
            run_id=r, task_type="t", version=1, target="local", inputs={"i": n}, template=templates.get(r, b""),
            output_prefix="", started_at=at(n)) for n, r in enumerate(ids)), return_exceptions=True)
        await asyncio.gather(*(journal.created_async(f"b{i}", f"m{i}".encode() * (i % 3) if i % 5 else None)
                               for i in range(40)))
        return results

    results = asyncio.run(main())
    refused = [str(r) for r in results if isinstance(r, BaseException)]
    assert len(refused) == 2 and all("is already in the journal" in r for r in refused)
    assert results[:40] == [None] * 40
    for i in range(40):
        journal.transition(f"b{i}", "SUCCEEDED" if i % 2 else "RUNNING", f"m{i}", at(100 + i))
    rows = {r["run_id"]: r for r in journal.unfinished()}
    assert sorted(rows) == sorted(["old"] + [f"b{i}" for i in range(0, 40, 2)])
    assert rows["b4"]["inputs"] == {"i": 4} and rows["b4"]["phase"] == "RUNNING"
    assert rows["b4"]["resource_meta"] == b"m4" and rows["b8"]["resource_meta"] == b"m8m8"
    assert journal.get("b3")["inputs"] == {"i": 3}  # the first b3 was written, the second refused
    assert rows["b10"]["resource_meta"] is None and rows["b6"]["resource_meta"] == b""
    assert all(journal.get(r)["template"] == t for r, t in templates.items())
    assert [t["phase"] for t in journal.history("b5")] == ["QUEUED", "SUCCEEDED"]
    assert journal.get("b5")["ended_at"] == at(105)


def test_a_transaction_is_a_statement_per_kind_whatever_its_size(journal):
    # every statement the sqlite3 module steps lets go of the GIL, and taking it back from a busy event loop
    # costs up to 5 ms: a transaction of thousands of writes must not be dozens of statements
    statements: list[str] = []

    class Counting:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            statements.append(sql.split(" (")[0])
            return self.db.execute(sql, *args)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.db, name)

    async def launch(n: int) -> None:
        await journal.intent_async(run_id=f"r{n}", task_type="t", version=1, target="local", inputs={},
                                   template=b"", output_prefix="", started_at=at(n))
        await journal.created_async(f"r{n}", b"meta")

    async def main() -> None:
        await asyncio.gather(*(launch(n) for n in range(3000)))

    journal._db = Counting(journal._db)
    asyncio.run(main())
    for i in range(6000):
        journal.transition(f"r{i % 3000}", "RUNNING" if i < 3000 else "SUCCEEDED", f"{i}", at(i))
    journal.flush()
    journal._db = journal._db.db
    transactions = statements.count("COMMIT")
    writes = [s for s in statements if s not in ("BEGIN IMMEDIATE", "COMMIT")]
    assert transactions <= 60  # 12,000 writes, batched: 7 transactions here (at most 2,500 writes each)
    assert len(writes) <= 5 * transactions  # intents, created (2), transitions, state: one statement each
    assert len(journal.unfinished()) == 0 and len(journal.history("r2999")) == 3


@pytest.mark.parametrize("statement_bytes", [8 * 2**20, 100], ids=["one statement", "in halves"])
def test_a_run_takes_the_state_of_its_last_transition_in_a_batch(journal, monkeypatch, statement_bytes):
    monkeypatch.setattr(journal_module, "_STATEMENT_BYTES", statement_bytes)
    for run_id in ("r1", "r2"):
        intent(journal, run_id)
        journal.created(run_id, b"meta")
    for i, phase in enumerate(["RUNNING", "QUEUED", "RUNNING", "SUCCEEDED", "RUNNING"]):  # one batch
        journal.transition("r1", phase, f"m{i}", at(10 + i), "backwards" if phase == "QUEUED" else "")
        journal.transition("r2", phase, f"m{i}", at(10 + i)) if i < 3 else None
    journal.flush()
    r1, r2 = journal.get("r1"), journal.get("r2")
    assert (r1["phase"], r1["message"], r1["ended_at"], r1["flags"]) == ("SUCCEEDED", "m3", at(13), ["backwards"])
    assert [t["phase"] for t in r1["transitions"]] == ["QUEUED", "RUNNING", "QUEUED", "RUNNING", "SUCCEEDED"]
    assert (r2["phase"], r2["message"], r2["ended_at"]) == ("RUNNING", "m2", None)


def test_an_sqlite_without_json_functions_is_refused_clearly(tmp_path):
    class NoJson:
        def execute(self, sql: str, *args: Any) -> None:
            raise sqlite3.OperationalError("no such function: json_extract")

    with pytest.raises(JournalError, match=r"has no JSON functions .*journal=False"):
        journal_module._check_json(NoJson(), tmp_path / "journal.sqlite3")  # type: ignore[arg-type]


# -- schema ------------------------------------------------------------------------------------
FIRST_FORMAT = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, task_type TEXT NOT NULL, version INTEGER NOT NULL, target TEXT NOT NULL,
    inputs TEXT NOT NULL, template BLOB, resource_meta BLOB, output_prefix TEXT,
    phase TEXT NOT NULL, message TEXT, started_at TEXT NOT NULL, ended_at TEXT, transitions TEXT NOT NULL
)"""


def test_a_first_format_journal_is_migrated(tmp_path):
    path = tmp_path / "journal.sqlite3"
    template = tasks_pb2.TaskTemplate(type="query")
    template.custom.update({"token": "OLD-SECRET-raw"})
    old = sqlite3.connect(path)
    old.execute("PRAGMA journal_mode=WAL")
    old.execute(FIRST_FORMAT)
    history = [{"phase": "QUEUED", "message": "created", "at": at(0).isoformat()},
               {"phase": "RUNNING", "message": "", "at": at(1).isoformat()}]
    old.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                ("old-1", "sleep", 1, "local", '{"n": 2}', template.SerializeToString(), b"meta", "/out",
                 "RUNNING", "", at(0).isoformat(), None, json.dumps(history)))
    old.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                ("old-2", "sleep", 1, "local", "{}", None, b"m", "", "SUCCEEDED", "ok", at(5).isoformat(),
                 at(6).isoformat(), "not json"))
    old.commit()
    old.close()
    with Journal(path) as j:
        row = j.get("old-1")
        assert (row["phase"], row["inputs"], row["resource_meta"]) == ("RUNNING", {"n": 2}, b"meta")
        assert [t["phase"] for t in row["transitions"]] == ["QUEUED", "RUNNING"]
        assert tasks_pb2.TaskTemplate.FromString(row["template"]).custom["token"] == "••••"
        assert j.get("old-2")["transitions"] == [] and j.get("old-2")["ended_at"] == at(6)
        assert [r["run_id"] for r in j.unfinished()] == ["old-1"]
        j.transition("old-2", "RUNNING", "reopen", at(7))  # migrated terminal runs stay closed
        j.transition("old-1", "SUCCEEDED", "done", at(8))
        assert j.get("old-2")["phase"] == "SUCCEEDED" and j.get("old-1")["phase"] == "SUCCEEDED"
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert b"OLD-SECRET-raw" not in path.read_bytes()
    with Journal(path) as again:  # opening a migrated journal again changes nothing
        assert len(again.frame()) == 2


def test_a_newer_schema_is_refused_clearly(tmp_path):
    path = tmp_path / "journal.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(JournalVersionError, match=rf"schema version {SCHEMA_VERSION + 1}, newer than"):
        Journal(path)


def test_an_unreadable_file_is_moved_aside_and_a_foreign_database_refused(tmp_path):
    path = tmp_path / "journal.sqlite3"
    path.write_bytes(b"this is not a database at all\n" * 200)
    with Journal(path) as j:
        intent(j, "r1")
        assert j.get("r1")["phase"] == "CREATING"
    [aside] = [p for p in tmp_path.iterdir() if ".unreadable-" in p.name and not p.name.endswith(("-wal", "-shm"))]
    assert aside.read_bytes() == b"this is not a database at all\n" * 200
    foreign = tmp_path / "app.sqlite3"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE users (name TEXT)")
    db.close()
    with pytest.raises(JournalError, match="not a connector_nb journal"):
        Journal(foreign)
    assert sqlite3.connect(foreign).execute("SELECT name FROM sqlite_master").fetchall() == [("users",)]


# -- bad input ---------------------------------------------------------------------------------
def test_bad_input_gets_documented_errors(journal):
    with pytest.raises(TypeError, match="path: expected"):
        Journal(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="inputs: expected Mapping, got list"):
        intent(journal, "r1", inputs=[1])
    with pytest.raises(TypeError, match="template: expected bytes, got str"):
        intent(journal, "r1", template="x")
    with pytest.raises(TypeError, match="started_at: expected datetime"):
        intent(journal, "r1", started_at="2026-01-01")
    with pytest.raises(InputError, match="template: expected the bytes of a serialized flyteidl TaskTemplate"):
        intent(journal, "r1", template=b"\xff\xff\xff")
    loop: dict[str, object] = {}
    loop["self"] = loop
    with pytest.raises(InputError, match="inputs: cannot be journaled"):
        intent(journal, "r1", inputs=loop)
    intent(journal, "r1")
    with pytest.raises(ValueError, match="run_id 'r1' is already in the journal"):
        intent(journal, "r1")
    with pytest.raises(TypeError, match="phase must be a str and at a datetime"):
        journal.transition("r1", "RUNNING", "", "now")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit: expected a non-negative int"):
        journal.frame(limit=-1)


def test_a_journal_that_cannot_be_created_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(JournalError, match="cannot create the journal at .*a-file/journal.sqlite3"):
        Journal(tmp_path / "a-file" / "journal.sqlite3")
    monkeypatch.setenv("CONNECTOR_NB_HOME", str(tmp_path / "a-file" / "home"))
    with pytest.raises(JournalError, match="set CONNECTOR_NB_HOME"):
        Journal()


def test_close_is_idempotent_and_late_writes_are_dropped(tmp_path):
    j = Journal(tmp_path / "journal.sqlite3")
    intent(j, "r1")
    j.transition("r1", "RUNNING", "before close", at(1))
    j.close()
    j.close()
    j.transition("r1", "FAILED", "after close", at(2))  # a poller finishing late: no error, nothing written
    j.flush()
    assert "closed" in repr(j)
    with pytest.raises(JournalError, match="is closed"):
        intent(j, "r2")
    with Journal(j.path) as again:
        assert again.get("r1")["message"] == "before close"
