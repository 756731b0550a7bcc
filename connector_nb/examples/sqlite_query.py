"""SQLiteQueryConnector: runs a query in a worker thread and writes the result as CSV.

The worker records progress in ``<output_prefix>/<job_id>/status.json`` (plus a log and a metrics file),
so ``get`` reads the state from disk and needs no in-memory job table. The in-memory part is only what
cancelling needs: the cancel event and the connection to ``interrupt()``.

Confinement: databases open read-only (``mode=ro``) unless the ``write`` input is true; an SQLite authorizer
denies ATTACH (and with it VACUUM INTO), DETACH and ``load_extension``; with a ``database_root`` (constructor
argument or ``$CONNECTOR_NB_SQLITE_ROOT``; set it whenever the connector is served) only databases under it
can be opened, and with an ``output_root`` (or ``$CONNECTOR_NB_OUTPUT_ROOT``) results stay under it.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator, Mapping

from ..connector import AsyncConnector, Resource, ResourceMeta
from ..errors import InputError
from ..helpers import (
    JobStore,
    custom_dict,
    downsample,
    elapsed_label,
    expect_meta,
    file_log_link,
    is_within,
    log_stream,
    metric_result,
    metrics_response,
    new_job_id,
    read_page,
    read_samples,
    safe_output_dir,
    wanted,
)

if TYPE_CHECKING:
    from flyteidl.admin import agent_pb2

_FETCH_BATCH = 500
#: SQLite VM instructions between checks for cancellation and timeout (cheap: a flag and a clock read).
_PROGRESS_EVERY = 10_000
_TERMINAL = ("SUCCEEDED", "FAILED", "ABORTED")


class _LazyTypes(Mapping[str, Any]):
    """An interface mapping whose types are imported on first use: connector_nb.literals imports flyteidl,
    and entry-point discovery imports this module, so keep that import off the discovery path."""

    def __init__(self, **specs: str) -> None:
        self._specs = specs
        self._types: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._types:
            import importlib

            module, _, attr = self._specs[key].partition(":")
            self._types[key] = getattr(importlib.import_module(module), attr)
        return self._types[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return repr(dict(self))


@dataclass
class SQLiteMeta(ResourceMeta):
    job_id: str
    job_dir: str
    database: str


class _Job:
    """This process's handle on a running query: the cancel flag and the connection to interrupt."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.lock = threading.Lock()  # serialises status writes against delete
        self.connection: sqlite3.Connection | None = None


#: job_id -> _Job, for queries running in this process (cancellation only; state is on disk).
_JOBS: dict[str, _Job] = {}
_JOBS_LOCK = threading.Lock()


class SQLiteQueryConnector(AsyncConnector[SQLiteMeta]):
    """Runs ``query`` (with named ``params``) against the SQLite file ``database``; outputs the rows as CSV.

    ``custom`` may hold ``{"timeout": seconds}``: the longest the query may take (lock waits included)
    before it is interrupted and the task FAILS.
    """

    name = "SQLite Query Connector"
    task_type_name = "sqlite_query"
    metadata_type = SQLiteMeta
    input_types = {"database": str, "query": str, "params": dict | None, "write": bool}
    input_defaults = {"params": None, "write": False}
    output_types = _LazyTypes(results="connector_nb.literals:StructuredDataset")

    def __init__(self, database_root: str | None = None, output_root: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: Databases must be under this directory (None: any local file the process can read).
        self.database_root = database_root or os.environ.get("CONNECTOR_NB_SQLITE_ROOT") or None
        #: Where ``output_prefix`` may point (None: anywhere without '..').
        self.output_root = output_root or os.environ.get("CONNECTOR_NB_OUTPUT_ROOT") or None
        self.jobs = JobStore("sqlite_query")

    def create(
        self, task_template: Any, output_prefix: str, inputs: dict[str, Any] | None = None,
        task_execution_metadata: Any = None, **kwargs: Any,
    ) -> SQLiteMeta:
        database, query, params, write = _check_inputs({**self.input_defaults, **(inputs or {})})
        if self.database_root is not None and not is_within(database, self.database_root):
            raise InputError(f"sqlite_query: input 'database' must be under {self.database_root}, got {database!r}")
        timeout = _timeout(custom_dict(task_template))
        job_id = new_job_id()
        job_dir = safe_output_dir(output_prefix, self.output_root, reroot=True) / job_id
        job_dir.mkdir()
        meta = SQLiteMeta(job_id=job_id, job_dir=str(job_dir), database=database)
        self.jobs.save(job_id, vars(meta))
        job = _Job()
        with _JOBS_LOCK:
            _JOBS[job_id] = job
        # Written before the thread starts, so get always finds a status.
        _write_status(job_dir, phase="QUEUED", message="queued", rows=0, started=None, finished=None,
                      pid=os.getpid())
        threading.Thread(target=_run, args=(meta, query, params, timeout, write, job), name=f"sqlite-{job_id}",
                         daemon=True).start()
        return meta

    def _meta(self, resource_meta: ResourceMeta) -> SQLiteMeta:
        """``resource_meta`` if it matches a job this machine created (paths included), else MetadataError."""
        meta = expect_meta(resource_meta, SQLiteMeta)
        self.jobs.check(meta.job_id, vars(meta))
        return meta

    def get(self, resource_meta: ResourceMeta, **kwargs: Any) -> Resource:
        meta = self._meta(resource_meta)
        job_dir = Path(meta.job_dir)
        links = [file_log_link("sqlite query log", job_dir / "query.log")]
        status = _read_status(job_dir)
        if status is None:
            return Resource("FAILED", f"no status file in {job_dir} (job directory removed?)", links)
        phase, message = status["phase"], status["message"]
        if phase not in _TERMINAL and (job_dir / "cancelled").exists():
            phase, message = "ABORTED", "cancelled by delete"
        elif phase not in _TERMINAL and not _worker_alive(meta, status):
            phase, message = "FAILED", f"worker process {status.get('pid')} exited before the query finished"
        custom = {"job_id": meta.job_id, "rows": status.get("rows", 0), "database": meta.database}
        outputs = None
        if phase == "SUCCEEDED":
            from connector_nb.literals import StructuredDataset

            outputs = {"results": StructuredDataset(uri=str(job_dir / "results.csv"), format="csv")}
        return Resource(phase, message, links, outputs, custom)

    def delete(self, resource_meta: ResourceMeta, **kwargs: Any) -> None:
        resource_meta = self._meta(resource_meta)
        job_dir = Path(resource_meta.job_dir)
        status = _read_status(job_dir)
        if status is None or status["phase"] in _TERMINAL:
            return  # idempotent; a finished query keeps its phase
        (job_dir / "cancelled").write_text(f"{time.time()}\n")  # visible to other processes
        with _JOBS_LOCK:
            job = _JOBS.get(resource_meta.job_id)
        if job is not None:
            job.cancel.set()
            _interrupt(job)

    async def get_logs(
        self, resource_meta: ResourceMeta, **kwargs: Any
    ) -> AsyncIterator[agent_pb2.GetTaskLogsResponse]:
        import asyncio

        meta = self._meta(resource_meta)
        lines, next_token = await asyncio.to_thread(
            read_page, Path(meta.job_dir) / "query.log", kwargs.get("token") or "", kwargs.get("lines") or 0
        )
        async for response in log_stream(lines, next_token=next_token):
            yield response

    def get_metrics(self, resource_meta: ResourceMeta, **kwargs: Any) -> agent_pb2.GetTaskMetricsResponse:
        resource_meta = self._meta(resource_meta)
        if not wanted("rows_fetched", kwargs):
            return metrics_response([])
        samples = read_samples(Path(resource_meta.job_dir) / "metrics.jsonl")
        points = downsample(((s["t"], s["rows"]) for s in samples), kwargs)
        return metrics_response([metric_result("rows_fetched", {"job_id": resource_meta.job_id}, points)])


def _check_inputs(values: Mapping[str, Any]) -> tuple[str, str, dict[str, Any], bool]:
    database, query, params = values.get("database"), values.get("query"), values.get("params")
    write = values.get("write", False)
    if not isinstance(database, (str, os.PathLike)) or not str(database) or "\x00" in str(database):
        raise InputError(f"sqlite_query: input 'database' must be a path to a SQLite file, got {database!r}")
    if str(database).startswith("file:") or str(database) == ":memory:":
        raise InputError(f"sqlite_query: input 'database' must be a plain file path, not a URI, got {database!r}")
    if not isinstance(write, bool):
        raise InputError(f"sqlite_query: input 'write' must be a bool, got {write!r}")
    if not isinstance(query, str) or not query.strip():
        raise InputError(f"sqlite_query: input 'query' must be a non-empty SQL string, got {query!r}")
    if params is not None and not isinstance(params, Mapping):
        raise InputError(f"sqlite_query: input 'params' must be a dict of named parameters or None, got {params!r}")
    return os.path.abspath(os.path.expanduser(str(database))), query, dict(params or {}), write


def _timeout(custom: Mapping[str, Any]) -> float | None:
    timeout = custom.get("timeout")
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise InputError(f"sqlite_query: custom 'timeout' must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


class _Recorder:
    """Writes a job's status, log and metrics files; every status write re-checks cancellation."""

    def __init__(self, job_dir: Path, job: _Job) -> None:
        self.job_dir, self.job = job_dir, job
        self.started = time.time()
        self.rows = 0

    def log(self, text: str) -> None:
        with open(self.job_dir / "query.log", "a") as f:
            f.write(f"{elapsed_label(time.time() - self.started)} {text}\n")

    def sample(self) -> None:
        with open(self.job_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"t": round(time.time(), 3), "rows": self.rows}) + "\n")

    def status(self, phase: str, message: str) -> None:
        with self.job.lock:
            if self.job.cancel.is_set() and phase != "ABORTED":
                phase, message = "ABORTED", "cancelled by delete"
            finished = time.time() if phase in _TERMINAL else None
            _write_status(self.job_dir, phase=phase, message=message, rows=self.rows, started=self.started,
                          finished=finished, pid=os.getpid())


def _run(
    meta: SQLiteMeta, query: str, params: dict[str, Any], timeout: float | None, write: bool, job: _Job
) -> None:
    rec = _Recorder(Path(meta.job_dir), job)
    try:
        rec.status("RUNNING", "running query")
        rec.log(f"started query on {Path(meta.database).name}")  # no machine path in the log
        rec.sample()
        _query(meta, query, params, timeout, write, rec)
    except sqlite3.Error as e:
        if job.cancel.is_set():
            rec.log("cancelled by delete")
            rec.status("ABORTED", "cancelled by delete")
        elif isinstance(e, sqlite3.OperationalError) and str(e) == "interrupted" and timeout:
            rec.log(f"timed out after {timeout:g} s")
            rec.status("FAILED", f"query timed out after {timeout:g} s")
        else:
            rec.log(f"error: {e}")
            rec.status("FAILED", str(e))
    except Exception as e:  # e.g. a disk error writing the CSV: surface it instead of hanging in RUNNING
        rec.log(f"error: {type(e).__name__}: {e}")
        rec.status("FAILED", f"{type(e).__name__}: {e}")
    finally:
        with _JOBS_LOCK:
            _JOBS.pop(meta.job_id, None)


def _query(
    meta: SQLiteMeta, query: str, params: dict[str, Any], timeout: float | None, write: bool, rec: _Recorder
) -> None:
    if not os.path.isfile(meta.database):
        raise sqlite3.OperationalError(f"unable to open database file: {meta.database} does not exist")
    # A URI with mode=ro (or rw: an existing file only, never created) instead of a bare path.
    uri = f"{Path(meta.database).as_uri()}?mode={'rw' if write else 'ro'}"
    connection = sqlite3.connect(uri, uri=True, timeout=timeout or 5.0, check_same_thread=False)
    connection.set_authorizer(_authorize)
    deadline = time.monotonic() + timeout if timeout else None
    # interrupt() is a no-op when no statement is running yet, so a delete that lands between connect and
    # execute would be lost; the progress handler re-checks the flag (and the timeout) as the query runs.
    connection.set_progress_handler(lambda: _should_stop(rec.job, deadline), _PROGRESS_EVERY)
    with rec.job.lock:
        rec.job.connection = connection
    try:
        cursor = connection.execute(query, params)
        _write_csv(cursor, Path(meta.job_dir) / "results.csv", rec)
        connection.commit()  # for INSERT/UPDATE statements; harmless after a SELECT
    finally:
        with rec.job.lock:
            rec.job.connection = None
        connection.close()
    if rec.job.cancel.is_set():
        raise sqlite3.OperationalError("interrupted")
    rec.status("SUCCEEDED", f"{rec.rows} rows")


#: Authorizer actions refused: reaching other files (ATTACH, which VACUUM and VACUUM INTO use too).
_DENIED_ACTIONS = frozenset({sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH})


def _authorize(action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
    """SQLite authorizer: deny ATTACH/DETACH (so VACUUM INTO too) and loading extensions."""
    if action in _DENIED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() == "load_extension":
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _should_stop(job: _Job, deadline: float | None) -> bool:
    return job.cancel.is_set() or (deadline is not None and time.monotonic() > deadline)


def _interrupt(job: _Job) -> None:
    """Abort the job's running statement (sqlite's interrupt() is safe from another thread)."""
    with job.lock:  # the worker clears job.connection under this lock before closing it
        if job.connection is not None:
            job.connection.interrupt()


def _write_csv(cursor: sqlite3.Cursor, path: Path, rec: _Recorder) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if cursor.description is None:  # not a SELECT: no columns, no rows
            rec.log(f"statement done, {max(cursor.rowcount, 0)} rows changed")
            rec.log(f"wrote {path.name}")
            return
        writer.writerow([column[0] for column in cursor.description])
        while batch := cursor.fetchmany(_FETCH_BATCH):
            if rec.job.cancel.is_set():
                raise sqlite3.OperationalError("interrupted")
            writer.writerows(batch)
            rec.rows += len(batch)
            rec.sample()
            rec.status("RUNNING", f"fetched {rec.rows} rows")
        rec.log(f"fetched {rec.rows} rows")
    rec.log(f"wrote {path.name}")


def _write_status(job_dir: Path, **status: Any) -> None:
    # Write-and-rename so a concurrent get never reads half a file.
    tmp = job_dir / f"status.json.{threading.get_ident()}.tmp"
    tmp.write_text(json.dumps(status))
    os.replace(tmp, job_dir / "status.json")


def _read_status(job_dir: Path) -> dict[str, Any] | None:
    try:
        status = json.loads((job_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) and isinstance(status.get("phase"), str) else None


def _worker_alive(meta: SQLiteMeta, status: Mapping[str, Any]) -> bool:
    """Whether the process running the query still exists (a crashed kernel must not leave RUNNING forever)."""
    pid = status.get("pid")
    if pid == os.getpid() or not isinstance(pid, int):
        return True
    import psutil

    return bool(psutil.pid_exists(pid))


__all__ = ["SQLiteQueryConnector", "SQLiteMeta"]
