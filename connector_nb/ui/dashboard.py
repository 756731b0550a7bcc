"""Dashboard: one live table of every run of a session, counts per phase, and cancel controls.

Re-rendered at most a few times a second from ``session.on_change``; only the latest ``max_rows`` runs are
drawn, so a session with thousands of runs stays cheap to show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..session import Session
from . import reprs
from .render_scheduler import Throttle, ThrottledView
from .run_view import button, enable, html_widget, submit

if TYPE_CHECKING:
    from ..session import AsyncSession


class Dashboard(ThrottledView, w.VBox):
    """Every run of ``session``: counts (``cnb-counts``), a table, "Cancel run" and "Cancel all"."""

    def __init__(
        self, session: Session | AsyncSession, *, max_rows: int = 200, interval: float = 0.25, tick: float = 1.0
    ) -> None:
        super().__init__()
        self.session = session
        self.max_rows = max_rows
        self.tick = tick
        self._async: AsyncSession = session.async_session if isinstance(session, Session) else session
        self._message = ""
        self.counts = html_widget("cnb-counts")
        self.table = html_widget("cnb-runs")
        self.live_runs = w.Dropdown(description="live run", options=[], layout=w.Layout(width="auto"))
        self.live_runs.add_class("cnb-live-runs")
        self.cancel_run_button = button("Cancel run", "cnb-cancel-run", icon="stop")
        self.cancel_all_button = button("Cancel all", "cnb-cancel-all", icon="stop", button_style="danger")
        self.status = html_widget("cnb-dashboard-status")
        self.cancel_run_button.on_click(lambda _b: self.cancel_selected())
        self.cancel_all_button.on_click(lambda _b: self.cancel_all())
        controls = w.HBox([self.live_runs, self.cancel_run_button, self.cancel_all_button, self.status],
                          layout=w.Layout(align_items="center", flex_flow="row wrap"))
        self.earlier = EarlierRuns(self._async) if self._async.journal is not None else None
        self.children = [self.counts, controls, self.table, *([self.earlier] if self.earlier else [])]
        self.add_class("cnb-dashboard")
        self._throttle = Throttle(self._render, self._held, interval)
        self._unsubscribe = session.on_change(lambda _run: self._throttle.mark())
        self._throttle.flush()

    def _held(self) -> list[w.Widget]:
        return [self.counts, self.table, self.live_runs, self.cancel_run_button, self.cancel_all_button, self.status]

    def _render(self) -> None:
        runs = list(self._async.runs)
        counts = self._async.counts()
        total = f"<b>{len(runs)} run{'' if len(runs) == 1 else 's'}</b> " if runs else ""
        self.counts.value = total + reprs.counts_html(counts)
        self.table.value = reprs.runs_table_html(runs, self.max_rows)
        live = [r for r in runs if r.live]
        self._set_live_options([(f"{r.run_id} ({r.task_type})", r.run_id) for r in live[-self.max_rows:][::-1]])
        enable(self.cancel_all_button, bool(live), "danger")
        enable(self.cancel_run_button, bool(live))
        self.live_runs.layout.display = None if live else "none"  # no empty dropdown when nothing is live
        self.status.value = reprs.esc(self._message)
        if any(not r.done for r in runs):
            self._throttle.mark(delay=self.tick)  # durations keep moving between changes

    def _set_live_options(self, options: list[tuple[str, str]]) -> None:
        if tuple(options) == tuple(self.live_runs.options):
            return
        selected = self.live_runs.value
        self.live_runs.options = options
        values = [value for _, value in options]
        if values:  # setting options resets (or keeps no) selection: keep the user's while it is live
            self.live_runs.value = selected if selected in values else values[0]

    # -- actions (return at once; outcomes are shown by the next render) -------------------------
    def cancel_selected(self) -> None:
        """Cancel the run chosen in the dropdown (returns at once)."""
        run_id = self.live_runs.value
        if run_id is None:
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

    def close(self) -> None:
        """Stop updates and close the widgets."""
        if self._stop_updates():
            for child in self._held():
                child.close()
        super().close()


__all__ = ["Dashboard"]


class EarlierRuns(w.VBox):
    """"From earlier sessions": runs a dead kernel left unfinished, each with Reattach and Cancel.

    Read from the journal when shown and on Refresh (not on every render: it is a database query).
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
        self.refresh()

    def refresh(self) -> None:
        """Read the journal again."""
        try:
            frame = self._async.recover()
        except Exception as e:  # a broken journal must not break the dashboard
            self.header.value = f"<b>From earlier sessions</b>: {reprs.esc(e)}"
            return
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
