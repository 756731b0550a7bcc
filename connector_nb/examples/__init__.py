"""Example connectors that do real work offline: sleeping, shell commands and SQLite queries.

Registered through the ``connector_nb.connectors`` entry point (``examples = connector_nb.examples:CONNECTORS``).

They behave like external systems: each job's record lives in the per-user state directory
(``$CONNECTOR_NB_HOME``, default ``~/.local/state/connector_nb``, mode 0700), so another process (a new kernel, a
restarted server) sees the same job, a cancellation included, and forged metadata is refused. Confinement
settings (constructor arguments, or environment variables read when the connector is built; set them whenever
the examples are served):

- ``output_root`` / ``$CONNECTOR_NB_OUTPUT_ROOT``: every output lands inside it (an absolute ``output_prefix``
  elsewhere is placed under it: ``/tmp/x`` -> ``<root>/tmp/x``; ``..`` and symlinks out are refused);
- ``database_root`` / ``$CONNECTOR_NB_SQLITE_ROOT`` (``sqlite_query``): databases must be under it.

``for_serving(root)`` builds them so configured, without ``shell`` unless ``allow_shell=True``.

``sqlite_query`` opens databases read-only unless its ``write`` input is true, and denies ATTACH, VACUUM and
extension loading. ``shell`` jobs get a scrubbed environment: ``BASE_ENV`` basics plus the task's ``env``.
"""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path
from typing import Any

from ..connector import AsyncConnector
from .shell import ShellConnector, ShellMeta
from .sleep import SleepConnector, SleepMeta
from .sqlite_query import SQLiteMeta, SQLiteQueryConnector

CONNECTORS = [SleepConnector, ShellConnector, SQLiteQueryConnector]

_CITIES = {
    "Amsterdam": "NL", "Berlin": "DE", "Lisbon": "PT", "Madrid": "ES", "Paris": "FR", "Rome": "IT",
}


def for_serving(root: str | os.PathLike[str], *, allow_shell: bool = False) -> list[AsyncConnector[Any]]:
    """The examples configured to be served: outputs under ``root/outputs``, databases only from
    ``root/databases`` (both created 0700); ``shell`` runs any command, so only with ``allow_shell``."""
    from ..helpers import _private_dir

    base = _private_dir(Path(root).expanduser().resolve())
    outputs, databases = str(_private_dir(base / "outputs")), str(_private_dir(base / "databases"))
    served: list[AsyncConnector[Any]] = [
        SleepConnector(output_root=outputs),
        SQLiteQueryConnector(database_root=databases, output_root=outputs),
    ]
    if allow_shell:
        served.append(ShellConnector(output_root=outputs))
    return served


def make_demo_database(path: str | Path, rows: int = 200) -> str:
    """Create (or recreate) a small SQLite database for tutorials and tests; returns its path.

    Tables: ``cities(name, country)`` and ``trips(id, city, distance_km, fare)`` with ``rows`` rows drawn
    from ``random.Random(0)``, so the contents are the same on every machine and every call.
    """
    path = Path(path).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    trips = []
    for i in range(1, rows + 1):
        distance = round(rng.uniform(0.5, 30.0), 2)
        fare = round(2.5 + distance * rng.uniform(1.2, 2.4), 2)
        trips.append((i, rng.choice(sorted(_CITIES)), distance, fare))
    with sqlite3.connect(path) as db:
        db.executescript(
            "DROP TABLE IF EXISTS trips; DROP TABLE IF EXISTS cities;"
            "CREATE TABLE cities (name TEXT PRIMARY KEY, country TEXT NOT NULL);"
            "CREATE TABLE trips (id INTEGER PRIMARY KEY, city TEXT NOT NULL REFERENCES cities(name),"
            " distance_km REAL NOT NULL, fare REAL NOT NULL);"
        )
        db.executemany("INSERT INTO cities VALUES (?, ?)", sorted(_CITIES.items()))
        db.executemany("INSERT INTO trips VALUES (?, ?, ?, ?)", trips)
    db.close()  # the context manager only commits
    return str(path)


__all__ = [
    "CONNECTORS", "SleepConnector", "SleepMeta", "ShellConnector", "ShellMeta", "SQLiteQueryConnector",
    "SQLiteMeta", "for_serving", "make_demo_database",
]
