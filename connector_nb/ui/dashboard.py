"""Dashboard: every run of a session in a fixed-height table, with filter, search, paging and per-row Cancel.

Built for 10,000 runs: only the rows of the current page are sent to the browser, through a fixed pool of
row widgets (an HTML cell line and a Cancel button each) whose values change in place, so an update sends
only the rows that changed. Re-rendered at most a few times a second from ``session.on_change``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import ipywidgets as w

from ..session import Session
from . import reprs
from .render_scheduler import Throttle, ThrottledView
from .run_view import CLOSED_NOTE, button, enable, html_widget, session_closed, shared, submit

if TYPE_CHECKING:
    from ..run import Run
    from ..session import AsyncSession

#: Filter choices: every run, live or finished ones, or one phase.
FILTERS = ("all", "live", "finished", *reprs.PHASE_COLOURS)
#: Columns of a row: task type, run id, phase, started, duration, message.
_HEADER = ("task type", "run", "phase", "started", "duration", "message")
# Sent once (in the header widget) rather than inline on each of the page's rows, which keeps an update
# of a full page small.
_STYLE = ("<style>.cnb-dashboard .cnb-run-row{height:28px;box-sizing:border-box;overflow:hidden}"
          ".cnb-dashboard .cnb-run-row,.cnb-dashboard .cnb-runs-header{display:grid;"
          "grid-template-columns:9em 17em 11em 6em 5em minmax(8em,1fr);gap:0 8px;align-items:center}"
          ".cnb-dashboard .cnb-run-row i{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;font-style:normal}"
          ".cnb-dashboard .cnb-run-row b{color:white;border-radius:4px;padding:1px 6px;font-family:monospace;"
          "font-size:90%;font-weight:normal;justify-self:start;align-self:center;line-height:18px;background:#6c757d}"
          + "".join(f".cnb-dashboard .cnb-run-row b[data-phase={p}]{{background:{c}}}"
                    for p, c in reprs.PHASE_COLOURS.items()) + "</style>")


def matches(run: Run, phase_filter: str, needle: str) -> bool:
    """Whether ``run`` passes the phase filter and contains ``needle`` (lower case) in its id or message."""
    wanted = {"all": True, "live": run.live, "finished": not run.live}.get(phase_filter, run.phase == phase_filter)
    if not wanted:
        return False
    return not needle or needle in run.run_id.lower() or needle in run.message.lower()


def row_html(run: Run) -> str:
    """One table row (``cnb-run-row``, with ``data-run-id``), compact: its look comes from the header's style."""
    message, run_id, phase = reprs.esc(reprs.short(run.message, 120)), reprs.esc(run.run_id), reprs.esc(run.phase)
    return (f"<div class='cnb-run-row' data-run-id='{run_id}'><span>{reprs.esc(run.task_type)}</span>"
            f"<code>{run_id}</code><b class='cnb-phase-badge' data-phase='{phase}'>{phase}</b>"
            f"<span>{run.started_at:%H:%M:%S}</span><span>{reprs.duration(run.elapsed)}</span>"
            f"<i title='{message}'>{message}</i></div>")


def header_html() -> str:
    """The column names, on the same grid as the rows, and the rows' style."""
    cells = "".join(f"<b>{reprs.esc(h)}</b>" for h in _HEADER)
    return f"{_STYLE}<div class='cnb-runs-header'>{cells}</div>"


def chart_svg(history: Sequence[tuple[float, dict[str, int]]], width: int = 320, height: int = 64) -> str:
    """A small line chart (inline SVG, ``cnb-chart``) of runs per phase over the sampled times."""
    if len(history) < 2:
        return ""
    t0, t1 = history[0][0], history[-1][0]
    top = max(1, *(n for _, counts in history for n in counts.values()))
    phases = sorted({p for _, counts in history for p in counts})
    lines = []
    for phase in phases:
        points = " ".join(f"{(t - t0) / max(t1 - t0, 1e-9) * (width - 2) + 1:.1f},"
                          f"{height - 1 - counts.get(phase, 0) / top * (height - 2):.1f}" for t, counts in history)
        colour = reprs.PHASE_COLOURS.get(phase, "#6c757d")
        lines.append(f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{points}'>"
                     f"<title>{reprs.esc(phase)}</title></polyline>")
    span = reprs.duration(t1 - t0)
    return (f"<svg class='cnb-chart' width='{width}' height='{height}' role='img' "
            f"aria-label='runs by phase over the last {span}' style='border:1px solid #dee2e6'>{''.join(lines)}</svg>"
            f"<span style='color:#6c757d;font-size:85%'> runs by phase, last {span} (max {top})</span>")


class _Slot:
    """One pooled Cancel button, acting on whichever run the page puts on its row."""

    def __init__(self, board: Dashboard) -> None:
        self.run_id = ""
        self.cancel = button("Cancel", "cnb-row-cancel", icon="stop", layout=shared("row_button"))
        self.cancel.on_click(lambda _b: board.cancel(self.run_id))

    def show(self, run: Run, closed: bool) -> None:
        self.run_id = run.run_id
        self.cancel.tooltip = f"cancel {run.run_id}"
        enable(self.cancel, run.live and not closed, "danger")


class Dashboard(ThrottledView, w.VBox):
    """Every run of ``session``: counts and a chart per phase, filter, search, a paged table, Cancel per row."""

    def __init__(
        self, session: Session | AsyncSession, *, page_size: int = 50, interval: float = 0.25, tick: float = 1.0,
        height: str = "360px", chart_points: int = 120,
    ) -> None:
        super().__init__(layout=shared("layout"))
        self.session = session
        self.page_size = page_size
        self.tick = tick
        self.page = 0
        self._async: AsyncSession = session.async_session if isinstance(session, Session) else session
        self._message = ""
        self._history: deque[tuple[float, dict[str, int]]] = deque(maxlen=chart_points)
        self.shown: list[str] = []  # run ids of the visible rows, top first
        self.matching = 0
        self._build(height)
        self._throttle = Throttle(self._render, self._held, interval)
        self._unsubscribe = session.on_change(lambda _run: self._throttle.mark())
        self._throttle.flush()

    def _build(self, height: str) -> None:
        self.counts = html_widget("cnb-counts")
        self.chart = html_widget("cnb-chart-box")
        self.phase_filter = w.Dropdown(options=FILTERS, value="all", description="phase",
                                       layout=w.Layout(width="14em"))
        self.phase_filter.add_class("cnb-filter")
        self.search = w.Text(placeholder="search id or message", layout=w.Layout(width="18em"))
        self.search.add_class("cnb-search")
        self.prev_button = button("", "cnb-prev", icon="chevron-left", tooltip="newer runs")
        self.next_button = button("", "cnb-next", icon="chevron-right", tooltip="older runs")
        self.page_label = html_widget("cnb-page")
        self.cancel_all_button = button("Cancel all", "cnb-cancel-all", icon="stop", button_style="danger")
        self.status = html_widget("cnb-dashboard-status")
        self.header = html_widget("cnb-runs-head", header_html())
        # The page's rows are one HTML value (one message per update); the Cancel buttons sit in a column
        # beside it, one per row at the same fixed height, and scroll with it.
        self.rows = html_widget("cnb-rows", layout=shared("grow"))
        self.slots = [_Slot(self) for _ in range(self.page_size)]
        self.cancels = w.VBox([], layout=shared("column"))
        self.table = w.HBox([self.rows, self.cancels], layout=w.Layout(max_height=height, overflow="auto",
                                                                       align_items="flex-start"))
        self.table.add_class("cnb-runs")
        self.phase_filter.observe(lambda _c: self._refilter(), "value")
        self.search.observe(lambda _c: self._refilter(), "value")
        self.prev_button.on_click(lambda _b: self.go(self.page - 1))
        self.next_button.on_click(lambda _b: self.go(self.page + 1))
        self.cancel_all_button.on_click(lambda _b: self.cancel_all())
        controls = w.HBox([self.phase_filter, self.search, self.prev_button, self.page_label, self.next_button,
                           self.cancel_all_button, self.status], layout=shared("row"))
        self.earlier = EarlierRuns(self._async) if self._async.journal is not None else None
        self.children = [w.HBox([self.counts, self.chart], layout=shared("row")), controls, self.header,
                         self.table, *([self.earlier] if self.earlier else [])]
        self.add_class("cnb-dashboard")

    def _held(self) -> list[w.Widget]:
        return [self.counts, self.chart, self.page_label, self.prev_button, self.next_button,
                self.cancel_all_button, self.status, self.rows, self.cancels, *(s.cancel for s in self.slots)]

    # -- rendering (UI thread) -------------------------------------------------------------------
    def _render(self) -> None:
        runs = self._async.runs
        counts = self._async.counts()
        closed = session_closed(self._async)
        total = f"<b>{len(runs)} run{'' if len(runs) == 1 else 's'}</b> " if runs else ""
        self.counts.value = total + reprs.counts_html(counts) + (CLOSED_NOTE if closed else "")
        self._sample(counts)
        page_runs = self._page_runs(runs)
        self.rows.value = "".join(row_html(run) for run in page_runs)
        for slot, run in zip(self.slots, page_runs):
            slot.show(run, closed)
        if len(page_runs) != len(self.cancels.children):
            self.cancels.children = [slot.cancel for slot in self.slots[: len(page_runs)]]
        self.shown = [run.run_id for run in page_runs]
        live = any(run.live for run in runs)
        enable(self.cancel_all_button, live and not closed, "danger")
        self.status.value = reprs.esc(self._message)
        if not closed and any(not run.done for run in runs):
            self._throttle.mark(delay=self.tick)  # durations and the chart keep moving between changes

    def _page_runs(self, runs: Sequence[Run]) -> list[Run]:
        """The runs of the current page, newest first, after the filter and the search."""
        phase, needle = self.phase_filter.value, self.search.value.strip().lower()
        found = runs if phase == "all" and not needle else [r for r in runs if matches(r, phase, needle)]
        self.matching = len(found)
        pages = max(1, -(-len(found) // self.page_size))
        self.page = min(self.page, pages - 1)
        end = len(found) - self.page * self.page_size  # newest first: page 0 is the end of the list
        chosen = list(found[max(0, end - self.page_size): end])[::-1]
        first = self.page * self.page_size + 1
        self.page_label.value = (f"<span class='cnb-page-label'>{first}–{first + len(chosen) - 1} of "
                                 f"{len(found):,} · page {self.page + 1} of {pages:,}</span>"
                                 if found else "<span class='cnb-page-label'>no matching runs</span>")
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= pages - 1
        return chosen

    def _sample(self, counts: dict[str, int]) -> None:
        now = time.monotonic()
        if self._history and now - self._history[-1][0] < self.tick * 0.9 and self._history[-1][1] == counts:
            return
        self._history.append((now, dict(counts)))
        self.chart.value = chart_svg(list(self._history))

    # -- actions (return at once; outcomes are shown by the next render) -------------------------
    def go(self, page: int) -> None:
        """Show page ``page`` (0 = the newest runs)."""
        self.page = max(0, page)
        self._throttle.flush()

    def _refilter(self) -> None:
        self.page = 0
        self._throttle.flush()

    def cancel(self, run_id: str) -> None:
        """Cancel one run by id (a row's Cancel button; returns at once)."""
        if not run_id:
            return
        try:
            run = self._async.get_run(run_id)
        except LookupError as e:
            self._say(str(e))
            return
        self._say(f"cancelling {run_id}…")
        submit(run, run.cancel_async(), lambda e, _r: self._say(
            f"cancel of {run_id} failed: {e}" if e else f"cancelled {run_id}"))

    def cancel_all(self) -> None:
        """Cancel every live run (returns at once)."""
        self._say("cancelling all live runs…")
        submit(self._async, self._async.cancel_all(), lambda e, runs: self._say(
            f"cancel all failed: {e}" if e else f"cancelled {len(runs)} runs"))

    def _say(self, message: str) -> None:
        self._message = message
        self._throttle.mark()

    # -- display ---------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        """The live widget, with the session's text and HTML as fallbacks (saved notebooks, GitHub)."""
        bundle: dict[str, Any] | None = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle["text/plain"] = reprs.session_text(self._async)
            bundle["text/html"] = reprs.session_html(self._async)
        return bundle

    def close(self) -> None:
        """Stop updates and close the widgets."""
        if self._stop_updates():
            owned: Iterable[w.Widget] = [*self._held(), self.header, self.phase_filter, self.search,
                                         self.table]
            for child in owned:
                child.close()
        super().close()


__all__ = ["FILTERS", "Dashboard", "chart_svg", "matches", "row_html"]


class EarlierRuns(w.VBox):
    """"From earlier sessions": runs a dead kernel left unfinished, each with Reattach and Cancel.

    Read from the journal when shown and on Refresh (not on every render: it is a database query), in a
    thread, so a big journal never holds up the cell that shows the dashboard.
    """

    def __init__(self, session: AsyncSession, max_rows: int = 20) -> None:
        """List ``session.recover()`` (the latest ``max_rows``)."""
        super().__init__()
        self._async = session
        self.max_rows = max_rows
        self.header = html_widget("cnb-earlier-header")
        self.refresh_button = button("Refresh", "cnb-earlier-refresh", icon="refresh")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.rows = w.VBox()
        self.status = html_widget("cnb-earlier-status")
        self.add_class("cnb-earlier")
        self.children = [w.HBox([self.header, self.refresh_button, self.status]), self.rows]
        self.header.value = "<b>From earlier sessions</b>: reading the journal…"
        self.layout.display = "none"  # shown once there is something to show
        self.loaded = threading.Event()
        threading.Thread(target=self.refresh, name="connector-nb-earlier", daemon=True).start()

    def refresh(self) -> None:
        """Read the journal again."""
        try:
            frame = self._async.recover()
        except Exception as e:  # a broken journal must not break the dashboard
            self.header.value = f"<b>From earlier sessions</b>: {reprs.esc(e)}"
            return
        finally:
            self.loaded.set()
        self.header.value = f"<b>From earlier sessions</b> ({len(frame)} unfinished)"
        self.rows.children = [self._row(r) for r in frame.head(self.max_rows).itertuples()]
        self.layout.display = None if len(frame) else "none"

    def _row(self, row: Any) -> w.HBox:
        label = html_widget("cnb-earlier-run")
        unknown = " · <i>create outcome unknown</i>" if row.unknown_outcome else ""
        label.value = (f"<code>{reprs.esc(row.run_id)}</code> {reprs.esc(row.task_type)} {reprs.badge(row.phase)} "
                       f"{reprs.duration(row.age.total_seconds())} ago{unknown}")
        reattach = button("Reattach", "cnb-earlier-reattach", icon="link")
        cancel = button("Cancel", "cnb-earlier-cancel", icon="stop", button_style="danger")
        reattach.on_click(lambda _b, rid=row.run_id: self._act(rid, cancel=False))
        cancel.on_click(lambda _b, rid=row.run_id: self._act(rid, cancel=True))
        return w.HBox([label, reattach, cancel], layout=w.Layout(align_items="center"))

    def _act(self, run_id: str, cancel: bool) -> None:
        async def work() -> Any:
            run = await self._async.reattach(run_id)
            if cancel:
                await run.cancel_async()
            return run

        def done(error: BaseException | None, run: Any) -> None:
            verb = "cancelled" if cancel else "reattached"
            self.status.value = reprs.esc(f"{run_id}: {error}" if error else f"{verb} {run_id}: {run.phase}")
            self.refresh()

        self.status.value = reprs.esc(f"{'cancelling' if cancel else 'reattaching'} {run_id}…")
        submit(self._async, work(), done)
