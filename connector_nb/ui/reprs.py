"""Text and HTML reprs that need no widget frontend (GitHub, nbviewer, saved notebooks, VS Code).

The widgets reuse these builders, so a live view and a saved one look alike. Class names (``cnb-*``) are the
DOM contract the browser tests select on. Inputs whose names look secret are always masked.
"""

from __future__ import annotations

import functools
import html
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from ..frames import clock, time_in_phases
from ..run import counts_text as plain_counts
from ..secrets import redact

if TYPE_CHECKING:
    from ..session import AsyncSession, Run, Session, Transition

PHASE_COLOURS = {
    "QUEUED": "#6c757d", "INITIALIZING": "#6c757d", "WAITING_FOR_RESOURCES": "#6c757d", "UNDEFINED": "#6c757d",
    "RUNNING": "#0d6efd", "SUCCEEDED": "#198754", "FAILED": "#dc3545", "RETRYABLE_FAILED": "#fd7e14",
    "ABORTED": "#495057",
}
_CELL = "padding:1px 8px;text-align:left;vertical-align:top"
_MAX_TEXT = 2000


def esc(value: Any) -> str:
    """HTML-escaped text of a value."""
    return html.escape(str(value))


def short(value: Any, limit: int = 200) -> str:
    """A value's text for display: machine paths shortened, cut to ``limit`` characters."""
    text = short_paths(repr(value) if not isinstance(value, str) else value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def duration(seconds: float) -> str:
    """Compact duration: 0.42s, 12.3s, 4m05s, 2h03m."""
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def badge(phase: str) -> str:
    """The phase badge; class and ``data-phase`` are on the element itself so selectors need no wrapper."""
    colour = PHASE_COLOURS.get(phase, "#6c757d")
    return (f"<span class='cnb-phase-badge' data-phase='{esc(phase)}' style='background:{colour};color:white;"
            f"border-radius:4px;padding:1px 6px;font-family:monospace;font-size:90%'>{esc(phase)}</span>")


def _table(css_class: str, header: Sequence[str], rows: Iterable[str]) -> str:
    head = "".join(f"<th style='{_CELL}'>{esc(h)}</th>" for h in header)
    return (f"<table class='{css_class}' style='border-collapse:collapse;font-size:90%'>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _row(cells: Iterable[str]) -> str:
    return "<tr>" + "".join(f"<td style='{_CELL}'>{c}</td>" for c in cells) + "</tr>"


# ---------------------------------------------------------------------------------------------- a run


def phase_durations(run: Run) -> list[tuple[Transition, float]]:
    """Each transition with the seconds spent in it (the last one up to the end, or now while live)."""
    items = list(run.transitions)
    return list(zip(items, time_in_phases(items, run.ended_at)))


def timeline_html(run: Run, max_rows: int = 200, current: str | None = None) -> str:
    """Table ``cnb-timeline``: phase, message, time, duration in phase; step-mode polls show their Resource.

    With ``current``, a live run's last row shows that text instead of a growing duration, so the table only
    changes when a transition is recorded (a live view then sends no timeline update per tick).
    """
    pairs = phase_durations(run)
    hidden = len(pairs) - max_rows
    live = current is not None and not run.done
    shown = pairs[-max_rows:]
    rows = []
    for i, (t, secs) in enumerate(shown):
        message = esc(short(t.message))
        if t.resource is not None:  # a step-mode poll: show what the connector returned, raw
            message += f"<br><code style='font-size:85%'>{esc(short(t.resource, 400))}</code>"
        spent = current if live and i == len(shown) - 1 else duration(secs)
        rows.append(_row([badge(t.phase), message, clock(t.at), esc(spent)]))
    note = f"<div style='color:#6c757d'>… {hidden} earlier transitions not shown</div>" if hidden > 0 else ""
    return note + _table("cnb-timeline", ["phase", "message", "time", "in phase"], rows)


def links_html(log_links: Iterable[Any], url_for: Callable[[str], str | None] | None = None) -> str:
    """Log links (flyteidl ``TaskLog``) as links opening in a new tab.

    A ``file://`` link is dead in a browser (and a machine path in a saved notebook): with ``url_for`` (in a
    kernel, ``connector_nb.jupyter_server.log_url``) it opens through the Jupyter server, otherwise it is
    shown as a plain name; the Logs tab shows the lines either way.
    """
    links = [_link(link, url_for) for link in log_links]
    return f"<span class='cnb-log-links'>{' · '.join(links)}</span>" if links else ""


def _link(link: Any, url_for: Callable[[str], str | None] | None) -> str:
    name = esc(link.name or "log")
    if not link.uri.startswith("file:"):
        return f"<a href='{esc(link.uri)}' target='_blank' rel='noopener'>{esc(link.name or link.uri)}</a>"
    url = url_for(link.uri) if url_for is not None else None
    if url is None:
        return f"<span title='local file: see the Logs tab'>{name}</span>"
    # The server's base URL is known only to the page (JupyterHub serves under /user/<name>/): read it on click.
    base = "JSON.parse(document.getElementById('jupyter-config-data').textContent).baseUrl"
    return (f"<a class='cnb-file-log' href='/{esc(url)}' target='_blank' rel='noopener' title='opens through the "
            f"Jupyter server' onclick=\"try{{this.href={base}+'{esc(url)}'}}catch(e){{}}\">{name}</a>")


@functools.lru_cache(maxsize=1)
def _path_prefixes() -> list[tuple[str, str]]:
    """Machine-specific path prefixes and what to show instead, longest first."""
    import site
    import sysconfig
    import tempfile

    pairs = [(p, "<site-packages>") for p in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]}]
    pairs += [(sysconfig.get_paths()["stdlib"], "<python>"), (tempfile.gettempdir(), "<tmp>"),
              (str(Path(__file__).resolve().parents[2]), "<repo>"), (str(Path.home()), "~")]
    return sorted(((str(Path(p)), short) for p, short in pairs if p), key=lambda pair: -len(pair[0]))


def short_paths(text: str) -> str:
    """``text`` with machine paths (site-packages, the stdlib, temp, home) shortened, for saved notebooks."""
    for prefix, shown in _path_prefixes():
        if prefix in text:
            text = text.replace(prefix, shown)
    return text


def format_error(error: BaseException) -> str:
    """The message and the traceback of the connector's own exception when there is one (paths shortened)."""
    cause = getattr(error, "original", None) or error.__cause__ or error
    text = f"{type(error).__name__}: {error}\n"
    if cause is not error or error.__traceback__ is not None:
        text += "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
    return short_paths(text)


def error_html(errors: Iterable[BaseException | str]) -> str:
    """Error box ``cnb-error`` (empty string when there is nothing to show)."""
    parts = [esc(e) if isinstance(e, str) else esc(format_error(e)) for e in errors if e]
    if not parts:
        return ""
    body = "\n".join(parts)
    return ("<div class='cnb-error' style='border:1px solid #dc3545;background:#fff5f5;padding:4px 8px'>"
            f"<pre style='white-space:pre-wrap;margin:0;max-height:20em;overflow:auto'>{body}</pre></div>")


def run_errors(run: Run) -> list[BaseException]:
    """The errors to show for a run (connector error, polling stop)."""
    errors = [e for e in (run.polling_error, run.error) if e is not None]
    return errors[:1] if len(errors) == 2 and errors[0].__cause__ is errors[1] else errors


def values_html(values: Mapping[str, Any], css_class: str) -> str:
    """Name/value table; DataFrames via ``to_html`` (at most 50 rows), secret names masked."""
    rows = []
    for name, value in redact(values).items():
        if hasattr(value, "to_html") and hasattr(value, "shape"):
            shown = value.head(50).to_html(max_cols=30, border=0)
            cell = f"<div style='max-height:24em;overflow:auto'>{shown}</div>{value.shape[0]} rows"
        else:
            cell = f"<code>{esc(short(value, _MAX_TEXT))}</code>"
        rows.append(_row([f"<b>{esc(name)}</b>", cell]))
    if not rows:
        return f"<i class='{css_class}'>none</i>"
    return _table(css_class, ["name", "value"], rows)


def logs_html(lines: Sequence[str] | None, note: str = "", follow: bool = False, max_lines: int = 2000) -> str:
    """Logs in ``pre.cnb-logs`` (the last ``max_lines``) under a line count and a "copy" button.

    With ``follow`` the box stays scrolled to its end (a reversed flex column starts at the bottom), so new
    lines stay in sight while a run is live, with no script.
    """
    if lines is None:
        return f"<pre class='cnb-logs' style='margin:0'>{esc(note or 'loading…')}</pre>"
    body = esc("\n".join(lines[-max_lines:])) or "<i>no log lines</i>"
    body += f"\n<i>{esc(note)}</i>" if note else ""
    count = f"{len(lines)} line{'' if len(lines) == 1 else 's'}"
    count += f" (last {max_lines} shown)" if len(lines) > max_lines else ""
    # Copies the shown lines; where the clipboard API is refused it leaves them selected for Ctrl+C.
    copy = ("<button class='cnb-copy-logs' title='copy the log lines' onclick=\"const p=this.closest("
            "'.cnb-logs-box').querySelector('pre');const r=document.createRange();r.selectNodeContents(p);"
            "const s=getSelection();s.removeAllRanges();s.addRange(r);"
            "if(navigator.clipboard){navigator.clipboard.writeText(p.innerText).catch(()=>{});}"
            "this.textContent='copied';\">copy</button>")
    direction = "column-reverse" if follow else "column"
    return (f"<div class='cnb-logs-box'><div style='color:#6c757d;font-size:90%'>"
            f"<span class='cnb-log-count'>{count}</span>{' · following' if follow else ''} {copy}</div>"
            f"<div class='cnb-logs-scroll' style='max-height:24em;overflow:auto;display:flex;"
            f"flex-direction:{direction}'><pre class='cnb-logs' style='margin:0'>{body}</pre></div></div>")


def plain_table(css_class: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table of already-escaped-safe text cells (they are escaped here)."""
    return _table(css_class, header, (_row(esc(c) for c in row) for row in rows))


def run_text(run: Run) -> str:
    """Plain-text status: id, task type, phase, elapsed, last message."""
    text = (f"Run {run.run_id} [{run.task_type} v{run.version}] {run.phase} after {duration(run.elapsed)}"
            f" ({run.get_calls} get calls): {short(run.message, 300)}")
    errors = run_errors(run)
    return text + (f"\nerror: {short(str(errors[0]), 300)}" if errors else "")


def run_html(run: Run) -> str:
    """A static snapshot of a run: header, log links, error, timeline, inputs and outputs."""
    header = (f"<div><b>Run</b> <code>{esc(run.run_id)}</code> {badge(run.phase)} <i>{esc(run.task_type)}</i>"
              f" v{run.version} · <span class='cnb-elapsed'>{duration(run.elapsed)}</span>"
              f" · {run.get_calls} get calls · {esc(short(run.message))}</div>")
    outputs = run.outputs if run.done else {}
    parts = [header, links_html(run.log_links), error_html(run_errors(run)), timeline_html(run, 50),
             f"<details><summary>inputs</summary>{values_html(run.inputs, 'cnb-inputs')}</details>"]
    if outputs:
        parts.append(f"<details open><summary>outputs</summary>{values_html(outputs, 'cnb-outputs')}</details>")
    return f"<div class='cnb-run'>{''.join(parts)}</div>"


# ---------------------------------------------------------------------------------------------- a session


def counts_html(counts: Mapping[str, int]) -> str:
    """Phase counts as badges."""
    items = " ".join(f"{badge(p)}&nbsp;{n}" for p, n in sorted(counts.items())) or "<i>no runs yet</i>"
    return f"<span class='cnb-counts'>{items}</span>"


def counts_text(counts: Mapping[str, int]) -> str:
    """Phase counts as text, or "no runs yet"."""
    return plain_counts(counts) or "no runs yet"


def runs_table_html(runs: Sequence[Run], max_rows: int = 200) -> str:
    """Latest ``max_rows`` runs, newest first: task type, id, phase, started, duration, last message."""
    shown = list(runs[-max_rows:])[::-1]
    rows = [_row([esc(r.task_type), f"<code>{esc(r.run_id)}</code>", badge(r.phase), f"{r.started_at:%H:%M:%S}",
                  duration(r.elapsed), esc(short(r.message, 120))]) for r in shown]
    note = (f"<div style='color:#6c757d'>showing the latest {len(shown)} of {len(runs)} runs</div>"
            if len(runs) > len(shown) else "")
    return note + _table("cnb-runs", ["task type", "run", "phase", "started", "duration", "message"], rows)


def session_text(session: Session | AsyncSession, max_rows: int = 20) -> str:
    """A session as plain text: counts and the latest runs."""
    runs = list(session.runs)
    lines = [f"Session {session.target}: {len(runs)} runs; {counts_text(session.counts())}"]
    lines += [f"  {r.run_id:<24} {r.task_type:<14} {r.phase:<10} {duration(r.elapsed):>8}  {short(r.message, 60)}"
              for r in runs[-max_rows:][::-1]]
    return "\n".join(lines)


def session_html(session: Session | AsyncSession, max_rows: int = 50) -> str:
    """A session as HTML: counts and the latest runs."""
    runs = list(session.runs)
    return (f"<div class='cnb-session'><b>Session</b> {esc(session.target)}: {len(runs)} runs "
            f"{counts_html(session.counts())}{runs_table_html(runs, max_rows) if runs else ''}</div>")
