"""SQLite journal of launched runs: what was launched, where, and every phase it reached.

It is what lets a restarted kernel find its runs again. The *intent* row is committed before ``create`` is
called and the resource meta as soon as ``create`` returns, so a process killed at any point leaves a trace
and keeps the handle of every job it created; transitions are appended (never rewritten) by a writer thread
in batches, off the caller's path (committed within ~20 ms, or at ``flush()``); a run in a terminal phase
is never reopened. Several processes may share one journal file (SQLite WAL). Nothing secret is stored:
inputs and the template's ``custom`` are redacted, messages masked, and resource meta that carries a secret
is not kept. Coroutines can use ``intent_async``/``created_async``: same guarantee, and concurrent launches
share commits.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import socket
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping  # isinstance: ~10x faster than typing
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, cast

from . import secrets as _secrets
from .errors import InputError, JournalError, JournalVersionError, UnknownRunError
from .secrets import MASK, is_secret_name, mask_text, redact, secret_values

if TYPE_CHECKING:
    import asyncio

    import pandas as pd

log = logging.getLogger(__name__)
_Row = TypeVar("_Row")

SCHEMA_VERSION = 1
FILE_NAME = "journal.sqlite3"
#: Phases after which a run is never reopened. RETRYABLE_FAILED ends polling too: a retry is a new run.
TERMINAL = ("SUCCEEDED", "FAILED", "ABORTED", "RETRYABLE_FAILED")
FRAME_COLUMNS = ["run_id", "task_type", "target", "age", "phase", "unknown_outcome", "started_at", "ended_at",
                 "message"]
_WAITED = ("intent", "created")  # kinds queued by intent_async/created_async, with the waiter's loop and future
_TERMINAL_SQL = "(" + ", ".join(f"'{p}'" for p in TERMINAL) + ")"
_OPEN = f"phase NOT IN {_TERMINAL_SQL}"  # every UPDATE of runs has it: a terminal run is never rewritten
_MAX_BATCH = 5000  # queued writes taken at once
_MAX_TX = 2500  # writes per transaction: bounds how long an intent() waits behind the writer
# Parameters per statement, in bytes: rows are sent in halves above it (SQLite refuses a parameter over 1 GB,
# and a burst of launches with large templates would otherwise be copied into one blob at once)
_STATEMENT_BYTES = 8 * 2**20
_LINGER_S = 0.02  # the writer gathers this long before committing (a flush() cuts it short): fewer, larger commits
_BUSY_TIMEOUT_S = 30.0
_CHECKPOINT_EVERY_S = 0.5  # the writer thread copies the WAL into the database this often (if anything changed)
_WAL_LIMIT = 32 * 2**20

_TABLES = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, task_type TEXT NOT NULL, version INTEGER NOT NULL, target TEXT NOT NULL,
    inputs TEXT NOT NULL, template BLOB, resource_meta BLOB, output_prefix TEXT,
    phase TEXT NOT NULL, message TEXT NOT NULL DEFAULT '', started_at TEXT NOT NULL, ended_at TEXT,
    unknown_outcome INTEGER NOT NULL DEFAULT 0, pid INTEGER, host TEXT, flags TEXT NOT NULL DEFAULT '',
    claimed_at TEXT) WITHOUT ROWID;
CREATE TABLE transitions (
    seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, phase TEXT NOT NULL, message TEXT NOT NULL,
    at TEXT NOT NULL, flag TEXT NOT NULL DEFAULT '');
CREATE INDEX transitions_run ON transitions(run_id, seq);
"""
# The rules live in the database, so they hold for every process sharing the file, atomically. (The runs
# table has no such trigger or partial index: each costs ~3-5 µs per UPDATE; its statements say AND {_OPEN}.)
_TRIGGERS = f"""
CREATE TRIGGER transitions_append_only BEFORE UPDATE ON transitions
BEGIN SELECT RAISE(ABORT, 'journal transitions are append-only'); END;
CREATE TRIGGER transitions_open_runs_only BEFORE INSERT ON transitions
WHEN NOT EXISTS (SELECT 1 FROM runs WHERE run_id = NEW.run_id AND {_OPEN})
BEGIN SELECT RAISE(IGNORE); END;
"""
_INSERT_TRANSITION = "INSERT INTO transitions (run_id, phase, message, at, flag) VALUES (?, ?, ?, ?, ?)"
# A transaction writes each kind of row with ONE statement, whatever its size: the rows travel as one JSON
# array (and blobs, joined, as a second parameter; rows say where theirs is: 1-based offset, length). The
# sqlite3 module lets go of the GIL for every statement it steps, and getting it back from a busy event loop
# takes up to the 5 ms switch interval: with a statement per kind and chunk of rows, a transaction took
# 100-500 ms of wall time for 20-60 ms of work, and launches waited on it.
def _j(n: int) -> str:
    return f"json_extract(v.value, '$[{n}]')"


def _at(n: int) -> str:
    """The ISO text (as ``_iso`` writes it) of the time in fields ``n``, ``n + 1`` (epoch seconds, microseconds).

    SQLite formats it on the writer's own core, without the GIL: ``isoformat`` took ~1 µs a row there.
    """
    return f"strftime('%Y-%m-%dT%H:%M:%S', {_j(n)}, 'unixepoch') || printf('.%06d+00:00', {_j(n + 1)})"


def _blob(n: int) -> str:
    """The blob whose offset and length are fields ``n`` and ``n + 1`` (NULL if the offset is)."""
    return f"CASE WHEN {_j(n)} IS NULL THEN NULL ELSE substr(?2, {_j(n)}, {_j(n + 1)}) END"


# Times travel as two fields, epoch seconds and microseconds (``_stamp``).
# intent: [run_id, template offset, template length, task_type, version, target, inputs, prefix, pid, host,
#          started s, started µs]
_INSERT_RUNS = ("INSERT INTO runs (run_id, template, task_type, version, target, inputs, output_prefix, "
                f"pid, host, started_at, phase) SELECT {_j(0)}, {_blob(1)}, "
                f"{', '.join(_j(n) for n in range(3, 10))}, {_at(10)}, 'CREATING' FROM json_each(?1) AS v "
                "ORDER BY v.key")
# transition: [run_id, phase, message, flag, at s, at µs]; the trigger drops rows of runs already terminal
_INSERT_TRANSITIONS = ("INSERT INTO transitions (run_id, phase, message, flag, at) "
                       f"SELECT {', '.join(_j(n) for n in range(4))}, {_at(4)} FROM json_each(?1) AS v "
                       "ORDER BY v.key")
# created: [run_id, meta offset, meta length, at s, at µs] (offset null: no meta kept)
_CREATED = ("INSERT INTO transitions (run_id, phase, message, at, flag) SELECT runs.run_id, 'QUEUED', 'created', "
            f"{_at(3)}, '' FROM json_each(?1) AS v JOIN runs ON runs.run_id = {_j(0)} AND runs.phase = 'CREATING' "
            "ORDER BY v.key")
# In an UPDATE every right-hand side sees the old row: phase and message move on only from CREATING.
_STORE_META = (f"UPDATE runs SET resource_meta = {_blob(1)}, "
               "phase = CASE phase WHEN 'CREATING' THEN 'QUEUED' ELSE phase END, "
               "message = CASE phase WHEN 'CREATING' THEN 'created' ELSE message END "
               f"FROM json_each(?1) AS v WHERE run_id = {_j(0)} AND {_OPEN}")
# Each run's state from the same transition rows: its last one (SQLite takes the bare columns from the row
# where max() is), written once per run, not once per row.
_STATE = (f"UPDATE runs SET phase = s.p, message = s.m, ended_at = CASE WHEN s.p IN {_TERMINAL_SQL} THEN s.a END "
          f"FROM (SELECT {_j(0)} AS r, {_j(1)} AS p, {_j(2)} AS m, {_at(4)} AS a, max(v.key) "
          f"FROM json_each(?1) AS v GROUP BY r) AS s WHERE run_id = s.r AND {_OPEN}")
_ADD_FLAG = ("UPDATE runs SET flags = CASE WHEN instr(',' || flags || ',', ',' || ?1 || ',') > 0 THEN flags "
             f"WHEN flags = '' THEN ?1 ELSE flags || ',' || ?1 END WHERE run_id = ?2 AND {_OPEN}")
_UNKNOWN = f"UPDATE runs SET unknown_outcome = 1, message = ? WHERE run_id = ? AND {_OPEN}"
_CLAIM = f"UPDATE runs SET pid = ?, host = ?, claimed_at = ? WHERE run_id = ? AND {_OPEN}"
_EXISTING = "SELECT json_group_array(run_id) FROM runs WHERE run_id IN (SELECT value FROM json_each(?))"


class JournalRow(TypedDict):
    """One journaled run, as ``Journal.get`` and ``Journal.unfinished`` return it."""

    run_id: str
    task_type: str
    version: int
    target: str
    inputs: dict[str, Any]  # redacted
    template: bytes | None  # serialized TaskTemplate, ``custom`` redacted
    resource_meta: bytes | None  # None until created, or when it carried a secret
    output_prefix: str | None
    phase: str  # "CREATING" until create returns
    message: str
    started_at: datetime
    ended_at: datetime | None
    unknown_outcome: bool
    pid: int | None  # the process that launched it (or reattached it last)
    host: str | None
    transitions: list[dict[str, str]]  # phase, message, at (ISO), flag; oldest first
    flags: list[str]  # distinct odd-sequence flags seen, e.g. "backwards"


def default_home() -> Path:
    """``$CONNECTOR_NB_HOME``, else the per-user state dir: ``($XDG_STATE_HOME or ~/.local/state)/connector_nb``."""
    home = os.environ.get("CONNECTOR_NB_HOME")
    if home:
        return Path(home).expanduser()
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "connector_nb"


class Journal:
    """A run journal in one SQLite file, safe to share between threads and processes."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        """Open (creating, or migrating from the old format) the journal at ``path``, default ``default_home()``."""
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path: expected a str, os.PathLike or None, got {type(path).__name__}")
        self.path = Path(path).expanduser() if path is not None else default_home() / FILE_NAME
        try:  # our own state dir is tightened even if it existed; a folder the user chose only if we make it
            _private_dir(self.path.parent, enforce=path is None)
            _create_private(self.path)
        except OSError as e:
            raise JournalError(f"cannot create the journal at {self.path}: {e.strerror or e} "
                               "(set CONNECTOR_NB_HOME, pass journal='path', or journal=False)") from e
        self._lock = threading.Lock()  # one connection, shared by the caller threads and the writer thread
        self._db = self._open()
        self._pid, self._host = os.getpid(), socket.gethostname()
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._dirty, self._checkpointed = False, time.monotonic()
        # ids of queued intent rows refused as duplicates (writer thread only): the row, not the run id, since
        # the first of two intents with one id is written and only the second refused
        self._rejected: set[int] = set()
        self._hurry = threading.Event()  # set by flush() and close(): commit what is queued now
        self._known: dict[str, list[str]] = {}  # secret input values of open runs, to mask them in messages
        self._closed = False
        #: Journal writes given up after repeated database errors (each is logged).
        self.dropped = 0
        self._writer = threading.Thread(target=self._drain, name="connector_nb-journal", daemon=True)
        self._writer.start()
        atexit.register(self.close)

    # -- writing -------------------------------------------------------------------------------
    def intent(
        self, *, run_id: str, task_type: str, version: int, target: str, inputs: Mapping[str, Any],
        template: bytes, output_prefix: str | None, started_at: datetime,
    ) -> None:
        """Record a launch before ``create`` is called; committed (visible to every process) when it returns."""
        row = self._intent_row(run_id, task_type, version, target, inputs, template, output_prefix, started_at)
        with self._lock:
            try:
                self._db.execute(_INSERT_RUNS, _intent_args([row]))  # autocommit: durable once execute returns
            except sqlite3.IntegrityError:
                raise ValueError(f"run_id {run_id!r} is already in the journal at {self.path}") from None
        self._dirty = True

    def intent_async(
        self, *, run_id: str, task_type: str, version: int, target: str, inputs: Mapping[str, Any],
        template: bytes, output_prefix: str | None, started_at: datetime,
    ) -> Awaitable[None]:
        """``intent()`` for coroutines: await it; committed when the await returns, without blocking the loop.

        Launches waiting at the same moment share one commit (group commit), which is what makes many
        concurrent launches cheap. (A future, not a coroutine: 10,000 launches waiting at once make no
        coroutine objects for the garbage collector to walk.)
        """
        row = self._intent_row(run_id, task_type, version, target, inputs, template, output_prefix, started_at)
        return self._committed("intent", row)

    def _intent_row(
        self, run_id: str, task_type: str, version: int, target: str, inputs: Mapping[str, Any], template: bytes,
        output_prefix: str | None, started_at: datetime,
    ) -> tuple[Any, ...]:
        """The checked, redacted row of an intent; remembers the run's secret values to mask its messages."""
        self._check_open()
        for name, value, kind in (("run_id", run_id, str), ("task_type", task_type, str), ("target", target, str),
                                  ("version", version, int), ("inputs", inputs, Mapping),
                                  ("template", template, bytes), ("started_at", started_at, datetime)):
            _need(name, value, kind)
        known, inputs_json = _clean_inputs(inputs)
        row = (run_id, task_type, version, target, inputs_json, _redact_template(template, known),
               output_prefix, self._pid, self._host, *_stamp(started_at))
        if known:
            self._known[run_id] = known
        return row

    def created(self, run_id: str, resource_meta: bytes | None) -> None:
        """``create`` returned ``resource_meta``: the run is QUEUED and reattachable; committed when this returns."""
        self._now("created", run_id, resource_meta, _utcnow())  # the handle to a live job: never left in a queue

    def created_async(self, run_id: str, resource_meta: bytes | None) -> Awaitable[None]:
        """``created()`` for coroutines: await it; committed (shared with others) when the await returns."""
        if self._closed:
            log.warning("journal %s closed: created for run %s not written", self.path, run_id)
            return _nothing()
        return self._committed("created", run_id, resource_meta, _utcnow())

    def outcome_unknown(self, run_id: str, detail: str) -> None:
        """``create`` may have reached the connector without an answer: flag the run, keep it listed as unfinished."""
        self._now("unknown", run_id, detail)

    def create_failed(self, run_id: str, detail: str) -> None:
        """``create`` raised, so the job does not exist: the run ends FAILED with ``detail``."""
        self._now("transition", run_id, "FAILED", f"create failed: {detail}", _utcnow(), "")

    def transition(self, run_id: str, phase: str, message: str, at: datetime, flag: str = "") -> None:
        """Append a phase change (written in the background); ignored once the run is in a terminal phase."""
        if not isinstance(phase, str) or not isinstance(at, datetime):
            raise TypeError(f"transition: phase must be a str and at a datetime, got {type(phase).__name__} "
                            f"and {type(at).__name__}")
        self._put("transition", run_id, phase, message, at, flag)

    def claim(self, run_id: str) -> None:
        """Mark ``run_id`` as watched by this process (after a reattach), so ``unfinished`` here skips it."""
        self._put("claim", run_id, self._pid, self._host, _iso(_utcnow()))

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything written so far is committed; JournalError if that takes over ``timeout`` s."""
        if self._closed:
            return  # close() flushed everything
        if not self._writer.is_alive():
            raise JournalError(f"the journal writer for {self.path} has stopped")
        done = threading.Event()
        self._queue.put(("flush", done))
        self._hurry.set()
        if not done.wait(timeout):
            raise JournalError(f"journal writes to {self.path} did not finish within {timeout} s")

    def close(self) -> None:
        """Flush, stop the writer thread and close the file; idempotent (also runs at interpreter exit)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._queue.put(("stop",))
        self._hurry.set()
        self._writer.join(timeout=3 * _BUSY_TIMEOUT_S)
        with self._lock:
            self._db.close()

    # -- reading (each read sees every write this object made before it) -----------------------
    def get(self, run_id: str) -> JournalRow:
        """The journaled run ``run_id``; UnknownRunError (listing recent ids) if there is none."""
        self._check_open()
        self.flush()
        with self._lock:
            row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise self._unknown(run_id)
            transitions = self._transitions("WHERE run_id = ?", (run_id,))
        return _journal_row(row, transitions.get(run_id, []))

    def history(self, run_id: str) -> list[dict[str, str]]:
        """The transitions of ``run_id`` in the order they were recorded: phase, message, at (ISO), flag."""
        return self.get(run_id)["transitions"]

    def unfinished(
        self, *, exclude_pid: int | None = None, orphans_only: bool = False, flush: bool = True
    ) -> list[JournalRow]:
        """Runs not in a terminal phase (intents and unknown outcomes too), newest first.

        ``exclude_pid`` skips the runs that process (on this host) launched or claimed: a live session's own.
        ``orphans_only`` also skips runs whose process still runs on this host (another open notebook's).
        ``flush=False`` reads without waiting for this object's queued writes (they are about its own runs).
        """
        where = f"WHERE {_OPEN}"
        args: tuple[Any, ...] = ()
        if exclude_pid is not None:
            where += " AND NOT (coalesce(pid, -1) = ? AND coalesce(host, '') = ?)"
            args = (exclude_pid, self._host)
        self._check_open()
        if flush:
            self.flush()
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM runs {where} ORDER BY started_at DESC, run_id DESC", args)
            found = rows.fetchall()
            transitions = self._transitions(f"WHERE run_id IN (SELECT run_id FROM runs {where})", args)
        return [_journal_row(r, transitions.get(r["run_id"], [])) for r in found
                if not (orphans_only and r["host"] == self._host and _alive_since(r["pid"], r["claimed_at"] or
                                                                                   r["started_at"]))]

    def frame(self, *, unfinished_only: bool = False, limit: int | None = None) -> pd.DataFrame:
        """Journaled runs, newest first: id, task type, target, age, phase, unknown outcome, times, message."""
        import pandas as pd

        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise ValueError(f"limit: expected a non-negative int or None, got {limit!r}")
        sql = ("SELECT run_id, task_type, target, phase, unknown_outcome, started_at, ended_at, message FROM runs"
               + (f" WHERE {_OPEN}" if unfinished_only else "") + " ORDER BY started_at DESC, run_id DESC"
               + (f" LIMIT {limit}" if limit is not None else ""))
        self._check_open()
        self.flush()
        with self._lock:
            rows = [tuple(r) for r in self._db.execute(sql)]
        frame = pd.DataFrame(rows, columns=[c for c in FRAME_COLUMNS if c != "age"])
        for column in ("started_at", "ended_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        frame["unknown_outcome"] = frame["unknown_outcome"].astype(bool)
        frame["age"] = pd.Timestamp.now(tz="UTC") - frame["started_at"]
        return cast("pd.DataFrame", frame[FRAME_COLUMNS])

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Journal {self.path}{' (closed)' if self._closed else ''}>"

    # -- plumbing ------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise JournalError(f"the journal at {self.path} is closed; open a new Journal to use it")

    def _put(self, *op: Any) -> None:
        if self._closed:
            log.debug("journal closed: dropped a late %s for run %s", op[0], op[1])
            return
        self._queue.put(op)

    def _now(self, *op: Any) -> None:
        """Commit ``op`` on the caller's thread (rare writes that must not wait in the queue)."""
        if self._closed:
            log.warning("journal %s closed: %s for run %s not written", self.path, op[0], op[1])
            return
        self._transaction([op])

    def _committed(self, *op: Any) -> asyncio.Future[None]:
        """Queue ``op``; the future (of the running loop) is done once the writer thread has committed it."""
        import asyncio

        self._check_open()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.put((*op, loop, done))  # one queued item: the writer writes op, then settles done
        if not self._hurry.is_set():  # someone waits: no lingering (set() takes a lock: only when needed)
            self._hurry.set()
        return done

    def _unknown(self, run_id: str) -> UnknownRunError:
        recent = [r[0] for r in self._db.execute("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 10")]
        return UnknownRunError(f"no run {run_id!r} in the journal at {self.path}; "
                               f"recent runs: {', '.join(recent) or 'none'}")

    def _transitions(self, where: str, args: tuple[Any, ...]) -> dict[str, list[dict[str, str]]]:
        found: dict[str, list[dict[str, str]]] = {}
        for run_id, phase, message, at, flag in self._db.execute(
                f"SELECT run_id, phase, message, at, flag FROM transitions {where} ORDER BY seq", args):
            found.setdefault(run_id, []).append({"phase": phase, "message": message, "at": at, "flag": flag})
        return found

    def _drain(self) -> None:
        """The writer thread: take what is queued, write it in one transaction, wake the flushers."""
        checkpointer: sqlite3.Connection | None = None
        try:
            while True:
                try:
                    batch = [self._queue.get(timeout=_CHECKPOINT_EVERY_S)]
                except queue.Empty:
                    checkpointer = self._checkpoint(checkpointer)
                    continue
                if batch[0][0] not in ("flush", "stop"):
                    self._hurry.wait(_LINGER_S)  # gather more; no wake-up per queued item (flush() cuts it short)
                self._hurry.clear()
                while len(batch) < _MAX_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                self._write(batch)
                if any(op[0] == "stop" for op in batch):
                    return
                checkpointer = self._checkpoint(checkpointer)
        finally:
            if checkpointer is not None:
                checkpointer.close()

    def _write(self, batch: list[tuple[Any, ...]]) -> None:
        # This thread needs the GIL for its Python work, and takes it from the event loop: one pass, no more.
        work: list[tuple[Any, ...]] = []
        flushes: list[threading.Event] = []
        waiting: dict[Any, list[tuple[Any, ...]]] = {}  # loop -> the ops waited for there
        for op in batch:
            kind = op[0]
            if kind in _WAITED:
                work.append(op)
                waiting.setdefault(op[-2], []).append(op)
            elif kind == "flush":
                flushes.append(op[1])
            elif kind != "stop":
                work.append(op)
        failed: BaseException | None = None
        try:
            if work:
                self._commit(work)
        except Exception as e:  # never let the writer die: flushers would wait forever
            failed = e
            self.dropped += len(work)
            log.exception("journal %s: %d writes lost", self.path, len(work))
        finally:
            for event in flushes:
                event.set()
            for loop, ops in waiting.items():  # one wake-up per loop and batch, not one per waiter
                errors = [self._outcome(op, failed) for op in ops] if failed or self._rejected else None
                with suppress(RuntimeError):  # the loop was closed meanwhile: nobody waits any more
                    loop.call_soon_threadsafe(_settle, [op[-1] for op in ops], errors)

    def _outcome(self, op: tuple[Any, ...], failed: BaseException | None) -> BaseException | None:
        """None if ``op`` was committed, else the error for the coroutine waiting for it."""
        if failed is not None:
            return JournalError(f"journal {self.path}: the write was lost ({failed})")
        if op[0] == "intent" and id(op[1]) in self._rejected:
            self._rejected.discard(id(op[1]))
            return ValueError(f"run_id {op[1][0]!r} is already in the journal at {self.path}")
        return None

    def _checkpoint(self, checkpointer: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """Copy the WAL into the database from this thread's own connection, when due.

        Auto-checkpoints are off on the shared connection: one would run inside some caller's commit and
        fsync there (stalls of 0.1-1 s were measured on a busy disk). A PASSIVE checkpoint blocks no writer.
        """
        if not self._dirty or time.monotonic() - self._checkpointed < _CHECKPOINT_EVERY_S:
            return checkpointer
        self._dirty, self._checkpointed = False, time.monotonic()
        try:
            checkpointer = checkpointer or sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
            checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            with self._lock:  # copy what landed meanwhile (a little) with this process's writers held back, so
                checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()  # the next commit restarts the WAL
        except sqlite3.Error as e:  # the next one will try again; the data is safe in the WAL meanwhile
            log.debug("journal %s: checkpoint failed: %s", self.path, e)
        return checkpointer

    def _commit(self, work: list[tuple[Any, ...]]) -> None:
        for first in range(0, len(work), _MAX_TX):  # the lock is free between transactions, for intent()
            self._transaction(work[first:first + _MAX_TX])

    def _transaction(self, work: list[tuple[Any, ...]]) -> None:
        for attempt in range(3):
            try:
                with self._lock:
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        ended = self._apply(work)
                        self._db.execute("COMMIT")
                    except BaseException:
                        if self._db.in_transaction:
                            self._db.execute("ROLLBACK")
                        raise
                self._dirty = True
                for run_id in ended:
                    self._known.pop(run_id, None)  # ended: no message of it will be written again
                return
            except sqlite3.OperationalError as e:  # locked past the busy timeout, disk full...
                log.warning("journal %s: write failed (%s), attempt %d of 3", self.path, e, attempt + 1)
                time.sleep(0.1 * (attempt + 1))  # back off before retrying the whole batch
        raise JournalError(f"journal {self.path}: giving up on {len(work)} writes")

    def _apply(self, work: list[tuple[Any, ...]]) -> set[str]:
        """Write ``work`` in the open transaction, a statement per kind; returns the runs it ended.

        Kinds go in the order one run's writes take (intent, created or unknown, claim, transitions), so
        writes of several kinds in one transaction land as if one by one.
        """
        intents, created, unknown, claims, transitions = [], [], [], [], []
        for op in work:  # one pass; the rare kinds are written only when present
            kind = op[0]
            if kind == "transition":
                transitions.append(op)
            elif kind == "intent":
                intents.append(op[1])
            elif kind == "created":
                created.append(op)
            elif kind == "unknown":
                unknown.append((self._mask(op[1], str(op[2])), op[1]))
            elif kind == "claim":
                claims.append((op[2], op[3], op[4], op[1]))
        if intents:
            self._insert_runs(intents)
        if created:
            self._created(created)
        if unknown:
            self._db.executemany(_UNKNOWN, unknown)
        if claims:
            self._db.executemany(_CLAIM, claims)
        return self._append(transitions) if transitions else set()

    def _created(self, ops: list[tuple[Any, ...]]) -> None:
        """Store each run's resource meta (unless it carries a secret) and move it from CREATING to QUEUED."""
        # op: kind, run_id, meta, at (and the waiter's loop and future, when queued by created_async)
        known = self._known
        items = [(op[1], _storable_meta(op[2], known.get(op[1], ())), op[3]) for op in ops]
        for _, (rows, blobs) in _parts(items, _created_args):
            self._db.execute(_CREATED, (rows,))
            self._db.execute(_STORE_META, (rows, blobs))

    def _append(self, ops: list[tuple[Any, ...]]) -> set[str]:
        """Insert the transitions, then update each run's state once (not once per row)."""
        rows, flags, ended = [], [], set()
        for _, run_id, phase, message, at, flag in ops:
            if run_id in ended:
                continue  # after a terminal phase in this same batch: dropped, as the trigger drops later ones
            rows.append((run_id, phase, self._mask(run_id, str(message)), str(flag), *_stamp(at)))
            if flag:
                flags.append((str(flag), run_id))
            if phase in TERMINAL:
                ended.add(run_id)
        texts = [params for _, params in _parts(rows, _json_args)]
        for params in texts:
            self._db.execute(_INSERT_TRANSITIONS, params)
        self._db.executemany(_ADD_FLAG, flags)  # before the state: once terminal, a run's row is never updated
        for params in texts:
            self._db.execute(_STATE, params)
        return ended

    def _insert_runs(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert intents; a run id journaled already (or earlier in ``rows``) is refused alone."""
        for part, params in _parts(rows, _intent_args):
            try:
                self._db.execute(_INSERT_RUNS, params)
                continue
            except sqlite3.IntegrityError:  # the statement wrote nothing: write it again without the duplicates
                pass
            (found,) = self._db.execute(_EXISTING, (json.dumps([row[0] for row in part]),)).fetchone()
            seen, fresh = set(json.loads(found)), []
            for row in part:
                if row[0] in seen:
                    self._rejected.add(id(row))  # its waiter gets the error
                else:
                    seen.add(row[0])
                    fresh.append(row)
            if fresh:
                self._db.execute(_INSERT_RUNS, _intent_args(fresh))

    def _mask(self, run_id: str, text: str) -> str:
        return _masked(text, self._known.get(run_id, []))

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.OperationalError as e:  # locked for too long, unwritable folder...: the file is fine
            raise JournalError(f"cannot open the journal at {self.path}: {e}") from e
        except sqlite3.DatabaseError as e:  # not a database at all (corrupt, or some other file)
            aside = _move_aside(self.path, "unreadable")
            log.warning("journal %s could not be read (%s); moved it to %s and started a new one", self.path, e,
                        aside)
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        _create_private(self.path)  # SQLite gives -wal and -shm the mode of the database file, whatever the umask
        db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            db.row_factory = sqlite3.Row
            _when_unlocked(lambda: _prepare(db, self.path))
            _check_json(db, self.path)
        except BaseException:
            db.close()
            raise
        for suffix in ("", "-wal", "-shm"):  # files made earlier under a looser mode are tightened too
            with suppress(FileNotFoundError, PermissionError):  # a shared file someone else owns stays theirs
                os.chmod(f"{self.path}{suffix}", 0o600)
        return db


def _prepare(db: sqlite3.Connection, path: Path) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives the process being killed
    db.execute("PRAGMA wal_autocheckpoint=0")  # the writer thread checkpoints (see Journal._checkpoint)
    db.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")  # a restarted WAL is cut back to this size
    db.execute("PRAGMA secure_delete=ON")  # what a migration drops is zeroed, not left in free pages
    _setup(db, path)


def _check_json(db: sqlite3.Connection, path: Path) -> None:
    """The writer passes rows as JSON: refuse clearly an SQLite without JSON functions."""
    try:
        db.execute("SELECT json_extract('[1]', '$[0]')")
    except sqlite3.OperationalError:
        raise JournalError(f"cannot use the journal at {path}: this Python's SQLite ({sqlite3.sqlite_version}) "
                           "has no JSON functions (built in from 3.38); pass journal=False") from None


def _when_unlocked(step: Callable[[], None]) -> None:
    """Run ``step``, again while the file is locked: switching to WAL gets SQLITE_BUSY at once (no busy wait)
    when two processes open a new journal together."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            return step()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)  # back off briefly; the other opener holds the lock for milliseconds


def _setup(db: sqlite3.Connection, path: Path) -> None:
    """Create or migrate the schema, once, even with several processes opening the file at the same time."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalVersionError(
                f"the journal at {path} has schema version {version}, newer than this connector_nb knows "
                f"({SCHEMA_VERSION}): upgrade connector_nb, or use another file (journal=... or CONNECTOR_NB_HOME)")
        if version < SCHEMA_VERSION:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "runs" in tables:
                _migrate_v0(db, path)
            elif tables:
                raise JournalError(f"{path} is an SQLite database but not a connector_nb journal "
                                   f"(tables: {', '.join(sorted(tables))}); give the journal another path")
            else:
                _run_script(db, _TABLES + _TRIGGERS)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _run_script(db: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT the open transaction first; statements one by one stay inside it.
    for statement in script.split(";\n"):
        if statement.strip():
            db.execute(statement)


def _migrate_v0(db: sqlite3.Connection, path: Path) -> None:
    """Rewrite a journal of the first format (one ``runs`` table, transitions as a JSON column)."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
    needed = {"run_id", "task_type", "version", "target", "inputs", "phase", "started_at", "transitions"}
    if not needed <= columns:
        raise JournalError(f"{path} has a 'runs' table this connector_nb does not know; give the journal "
                           "another path")
    db.execute("ALTER TABLE runs RENAME TO runs_v0")
    _run_script(db, _TABLES)
    old = db.execute("SELECT * FROM runs_v0 ORDER BY started_at").fetchall()
    for row in old:
        db.execute("INSERT INTO runs (run_id, task_type, version, target, inputs, template, resource_meta, "
                   "output_prefix, phase, message, started_at, ended_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                   (row["run_id"], row["task_type"], row["version"], row["target"], _masked(row["inputs"], []),
                    _redact_template_or_none(row["template"]), _storable_meta(row["resource_meta"], []),
                    row["output_prefix"], row["phase"], _masked(row["message"] or "", []), row["started_at"],
                    row["ended_at"]))
        history = [(row["run_id"], t["phase"], _masked(t["message"], []), t["at"], "")
                   for t in _old_transitions(row["transitions"])]
        db.executemany(_INSERT_TRANSITION, history)
    db.execute("DROP TABLE runs_v0")
    _run_script(db, _TRIGGERS)  # after the copy: the rules would refuse history of runs already terminal
    log.info("journal %s: migrated %d runs from the first format", path, len(old))


def _old_transitions(text: str | None) -> list[dict[str, str]]:
    try:
        items = json.loads(text or "[]")
    except ValueError:
        return []
    return [{"phase": str(t["phase"]), "message": str(t.get("message") or ""), "at": str(t["at"])}
            for t in items if isinstance(t, dict) and "phase" in t and "at" in t]


def _parts(
    rows: list[_Row], encode: Callable[[list[_Row]], tuple[Any, ...]]
) -> Iterator[tuple[list[_Row], tuple[Any, ...]]]:
    """``rows`` with their statement parameters ``encode(rows)``; in halves while those exceed _STATEMENT_BYTES."""
    params = encode(rows)
    if len(rows) > 1 and sum(map(len, params)) > _STATEMENT_BYTES:
        half = len(rows) // 2
        yield from _parts(rows[:half], encode)
        yield from _parts(rows[half:], encode)
    else:
        yield rows, params


def _json_args(rows: list[tuple[Any, ...]]) -> tuple[str]:
    return (json.dumps(rows),)


def _joined(blobs: list[bytes | None]) -> tuple[list[tuple[int | None, int | None]], bytes]:
    """Where each blob sits in their concatenation (1-based offset, length; (None, None) for no blob), and it."""
    slots: list[tuple[int | None, int | None]] = []
    offset = 1
    for blob in blobs:
        if blob is None:
            slots.append((None, None))
        else:
            slots.append((offset, len(blob)))
            offset += len(blob)
    return slots, b"".join(blob for blob in blobs if blob is not None)


def _created_args(items: list[tuple[str, bytes | None, datetime]]) -> tuple[str, bytes]:
    """``_CREATED``/``_STORE_META`` parameters for (run_id, meta, at) items: [run_id, offset, length, at] rows."""
    slots, blob = _joined([meta for _, meta, _ in items])
    return json.dumps([(run_id, *slot, *_stamp(at)) for (run_id, _, at), slot in zip(items, slots)]), blob


def _intent_args(rows: list[tuple[Any, ...]]) -> tuple[str, bytes]:
    """``_INSERT_RUNS``'s parameters for intent rows (run_id, task_type, version, target, inputs, template, ...)."""
    slots, blob = _joined([row[5] for row in rows])
    return json.dumps([(row[0], *slot, *row[1:5], *row[6:]) for row, slot in zip(rows, slots)]), blob


async def _nothing() -> None:
    """An awaitable that does nothing (a write not made, already logged)."""


def _settle(waiters: list[Any], errors: list[BaseException | None] | None) -> None:
    """On the waiters' loop: finish each future, with its error if it has one (``errors``: None if none has)."""
    for i, done in enumerate(waiters):
        if done.done():
            continue  # its waiter was cancelled
        error = errors[i] if errors is not None else None
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


def _journal_row(row: sqlite3.Row, transitions: list[dict[str, str]]) -> JournalRow:
    try:
        inputs = json.loads(row["inputs"])
    except ValueError:
        inputs = {}
    return JournalRow(
        run_id=row["run_id"], task_type=row["task_type"], version=row["version"], target=row["target"],
        inputs=inputs if isinstance(inputs, dict) else {}, template=row["template"],
        resource_meta=row["resource_meta"], output_prefix=row["output_prefix"], phase=row["phase"],
        message=row["message"], started_at=_parse(row["started_at"]),
        ended_at=_parse(row["ended_at"]) if row["ended_at"] else None,
        unknown_outcome=bool(row["unknown_outcome"]), pid=row["pid"], host=row["host"], transitions=transitions,
        flags=[f for f in row["flags"].split(",") if f])


# -- secrets -----------------------------------------------------------------------------------
_CLEAN_KEPT = 4096  # texts and templates remembered as having nothing to mask
_clean: dict[str | bytes, int] = {}  # text or template -> secrets.generation() when it was found clean


def _found_clean(key: str | bytes) -> bool:
    """Whether ``key`` was found to hold nothing to mask, and no secret was remembered since."""
    return _clean.get(key) == _secrets.generation()


def _mark_clean(key: str | bytes) -> None:
    if len(_clean) >= _CLEAN_KEPT:
        _clean.clear()
    _clean[key] = _secrets.generation()


def _masked(text: str, known: Iterable[str]) -> str:
    """``text`` with the run's secret input values masked, and every secret ``secrets.mask`` remembers."""
    if known:
        return mask_text(text, known)
    if _found_clean(text):  # messages repeat ("created", "RUNNING"...): each is checked once
        return text
    masked = mask_text(text, ())
    if masked == text and len(text) <= 256:
        _mark_clean(text)
    return masked


def _scrub(value: Any, known: list[str]) -> Any:
    """A JSON-ready copy of ``value`` with every string masked (non-JSON leaves become their masked str)."""
    if isinstance(value, Mapping):
        return {str(k): _scrub(v, known) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, known) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _masked(str(value), known)


def _clean_inputs(inputs: Mapping[str, Any]) -> tuple[list[str], str]:
    """The secret input values (to mask them later), and the inputs as redacted, masked JSON."""
    if not inputs:
        return [], "{}"
    try:
        known = secret_values(inputs)
        return known, json.dumps(_scrub(redact(inputs), known))
    except (RecursionError, ValueError) as e:  # a self-containing value
        raise InputError(f"inputs: cannot be journaled as JSON ({type(e).__name__}: {e})") from None


def _redact_template(template: bytes, known: list[str]) -> bytes:
    """The TaskTemplate with secret-named ``custom``/``config``/env values masked and the rest masked by value."""
    if not template:
        return template
    if not known and _found_clean(template):
        return template  # seen, clean, and no secret remembered since: launches of one task repeat it
    from flyteidl.core import tasks_pb2
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError

    try:
        message = tasks_pb2.TaskTemplate.FromString(template)
    except DecodeError:
        raise InputError("template: expected the bytes of a serialized flyteidl TaskTemplate") from None
    text = template.decode("utf-8", "replace")
    if not is_secret_name(text) and _masked(text, known) == text:
        if not known:
            _mark_clean(template)
        return template  # no secret-looking name or value anywhere in it (the common case): kept as it is
    if message.HasField("custom"):
        clean = _scrub(redact(json_format.MessageToDict(message.custom)), known)
        message.custom.Clear()
        message.custom.update(clean)
    for key in list(message.config):
        message.config[key] = MASK if is_secret_name(key) else _masked(message.config[key], known)
    if message.HasField("container"):
        for pair in message.container.env:
            pair.value = MASK if is_secret_name(pair.key) else _masked(pair.value, known)
    return bytes(message.SerializeToString())


def _redact_template_or_none(template: bytes | None) -> bytes | None:
    try:
        return _redact_template(template, []) if template else None
    except InputError:
        return None  # an old row with an unreadable template cannot be reattached anyway


def _storable_meta(meta: bytes | None, known: Iterable[str]) -> bytes | None:
    """The resource meta, or None when it carries a secret (such a run cannot be reattached)."""
    if meta is None:
        return None
    if known and any(secret.encode() in meta for secret in known if len(secret) >= 3):
        return None
    if not is_secret_name(meta.decode("utf-8", "replace")):
        return meta  # no secret-looking name anywhere in it: no need to parse it
    try:
        fields = json.loads(meta)
    except (ValueError, UnicodeDecodeError):
        return meta
    return None if _has_secret_name(fields) else meta


def _has_secret_name(value: Any) -> bool:
    if isinstance(value, dict):
        return any(is_secret_name(str(k)) or _has_secret_name(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_secret_name(v) for v in value)
    return False


# -- files and values --------------------------------------------------------------------------
def _private_dir(folder: Path, *, enforce: bool) -> None:
    existed = folder.is_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if enforce or not existed:
        os.chmod(folder, 0o700)  # mkdir's mode is cut by the umask; chmod is not


def _create_private(file: Path) -> None:
    """Create ``file`` as 0600 if it does not exist.

    Never open an existing journal file ourselves: closing that descriptor would drop the POSIX locks that
    SQLite connections of this process hold on it (and another process could then truncate the -shm under us).
    """
    try:
        fd = os.open(file, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)  # the O_CREAT mode is cut by the umask; fchmod is not
    finally:
        os.close(fd)


def _move_aside(path: Path, why: str) -> Path:
    aside = path.with_name(f"{path.name}.{why}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}")
    for suffix in ("", "-wal", "-shm"):
        with suppress(FileNotFoundError):
            os.replace(f"{path}{suffix}", f"{aside}{suffix}")
    return aside


def _alive_since(pid: int | None, since: str) -> bool:
    """Whether process ``pid`` runs and already ran at ``since`` (so it is not a later process reusing the pid)."""
    import psutil

    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        started = process.create_time()
        zombie = process.status() == psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return not zombie and started <= _parse(since).timestamp() + 1.0  # create_time is rounded by the OS


def _need(name: str, value: Any, kind: type) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{name}: expected {kind.__name__}, got {type(value).__name__}")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


_EPOCH, _NAIVE_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc), datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def _stamp(at: datetime) -> tuple[int, int]:
    """Epoch seconds and microseconds of ``at`` (naive: taken as UTC), for SQL's ``_at``: exact, ~4x cheaper
    than ``_iso``."""
    return divmod((at - (_NAIVE_EPOCH if at.tzinfo is None else _EPOCH)) // _MICROSECOND, 1_000_000)


def _iso(at: datetime) -> str:
    """UTC ISO text with microseconds, so that text order is time order; a naive time is taken as UTC."""
    if at.tzinfo is not timezone.utc:  # our own times are UTC already (the common case: no conversion)
        at = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)
    return at.isoformat(timespec="microseconds")


def _parse(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at


__all__ = ["FILE_NAME", "Journal", "JournalRow", "SCHEMA_VERSION", "TERMINAL", "default_home"]
