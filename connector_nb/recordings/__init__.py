"""Recordings shipped with connector_nb, for tutorials that replay a cloud connector offline.

``bigquery_query.cnbrec``: a BigQuery-style query (QUEUED, RUNNING with progress metrics, paginated logs, a
structured-dataset output), recorded from the local fake in ``connector_nb.recordings.bigquery_fake``.
"""

from __future__ import annotations

from pathlib import Path

#: The folder holding the shipped recordings.
FOLDER = Path(__file__).resolve().parent
#: The BigQuery-style query recording.
BIGQUERY = FOLDER / "bigquery_query.cnbrec"


def path(name: str) -> Path:
    """The shipped recording called ``name`` (with or without ``.cnbrec``); ValueError lists the others."""
    found = FOLDER / (name if name.endswith(".cnbrec") else f"{name}.cnbrec")
    if found.parent != FOLDER or not found.is_file():
        known = ", ".join(sorted(p.stem for p in FOLDER.glob("*.cnbrec")))
        raise ValueError(f"no shipped recording {name!r}; expected one of: {known}")
    return found


__all__ = ["BIGQUERY", "FOLDER", "path"]
