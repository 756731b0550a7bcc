"""HTML reprs that need no widget frontend (GitHub, nbviewer, saved notebooks)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..session import AsyncSession, Run

PHASE_COLOURS = {
    "QUEUED": "#6c757d", "INITIALIZING": "#6c757d", "WAITING_FOR_RESOURCES": "#6c757d", "UNDEFINED": "#6c757d",
    "RUNNING": "#0d6efd", "SUCCEEDED": "#198754", "FAILED": "#dc3545", "RETRYABLE_FAILED": "#fd7e14",
    "ABORTED": "#495057",
}


def badge(phase: str) -> str:
    colour = PHASE_COLOURS.get(phase, "#6c757d")
    return (f"<span style='background:{colour};color:white;border-radius:4px;padding:1px 6px;"
            f"font-family:monospace;font-size:90%'>{html.escape(phase)}</span>")


def run_html(run: Run) -> str:
    rows = "".join(
        f"<tr><td>{badge(t.phase)}</td><td>{html.escape(t.message)}</td><td>{t.at:%H:%M:%S.%f}</td></tr>"
        for t in run.transitions
    )
    return (f"<div><b>Run</b> <code>{html.escape(run.run_id)}</code> {badge(run.phase)} "
            f"<i>{html.escape(run.task_type)}</i> {run.elapsed:.1f}s, {run.get_calls} get calls"
            f"<table>{rows}</table></div>")


def session_html(session: AsyncSession) -> str:
    counts = " ".join(f"{badge(p)}&nbsp;{n}" for p, n in sorted(session.counts().items()))
    return f"<div><b>Session</b> {html.escape(session.target)}: {len(session.runs)} runs {counts}</div>"
