"""SQLite journal of launched runs: what was launched, where, and every phase it reached.

It lets a restarted kernel find its runs again (``AsyncSession.reattach``). Inputs are stored redacted,
and resource metadata with a secret-looking field is not stored at all.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .secrets import is_secret_name, redact

if TYPE_CHECKING:
    import pandas as pd

    from .run import Run

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, task_type TEXT NOT NULL, version INTEGER NOT NULL, target TEXT NOT NULL,
    inputs TEXT NOT NULL, template BLOB, resource_meta BLOB, output_prefix TEXT,
    phase TEXT NOT NULL, message TEXT, started_at TEXT NOT NULL, ended_at TEXT, transitions TEXT NOT NULL
)"""


def default_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "connector_nb" / "journal.sqlite3"


class Journal:
    """Records runs on every phase change (not on every poll)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Runs change on the engine thread, reads come from the kernel thread: one connection, one lock.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(SCHEMA)
        self._lock = threading.Lock()
        self._phases: dict[str, tuple[str, int]] = {}

    def record(self, run: Run) -> None:
        state = (run.phase, len(run.transitions))
        if self._phases.get(run.run_id) == state:
            return
        self._phases[run.run_id] = state
        transitions = [{"phase": t.phase, "message": t.message, "at": t.at.isoformat()} for t in run.transitions]
        row = (run.run_id, run.task_type, run.version, run.session.target, json.dumps(redact(run.inputs), default=str),
               run.template.SerializeToString(), _storable_meta(run.resource_meta), run.output_prefix, run.phase,
               run.message, run.started_at.isoformat(), run.ended_at.isoformat() if run.ended_at else None,
               json.dumps(transitions))
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", row)

    def get(self, run_id: str) -> dict[str, Any]:
        with self._lock:
            cursor = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,))
            row = cursor.fetchone()
            names = [d[0] for d in cursor.description]
        if row is None:
            raise KeyError(f"no run {run_id!r} in the journal at {self.path}")
        return dict(zip(names, row))

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        with self._lock:
            return pd.read_sql_query(
                "SELECT run_id, task_type, version, target, phase, message, started_at, ended_at, inputs "
                "FROM runs ORDER BY started_at", self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"<Journal {self.path}>"


def _storable_meta(meta: bytes) -> bytes | None:
    try:
        fields = json.loads(meta)
    except ValueError:
        return meta
    if isinstance(fields, dict) and any(is_secret_name(str(k)) for k in fields):
        return None  # a handle carrying a secret is not written to disk; such a run cannot be reattached
    return meta
