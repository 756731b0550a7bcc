"""RunView: a live widget of one run (phase badge, timeline, buttons, logs/metrics/outputs tabs).

Updates come from ``run.on_change`` (engine thread), are coalesced by a :class:`Throttle` and rendered on
the shared UI thread; buttons submit coroutines to the engine loop and never wait on them, so a click
does not block the kernel.
"""

from __future__ import annotations

import io
import time
from typing import TYPE_CHECKING, Any, Callable, Coroutine

import ipywidgets as w
from traitlets import Bool, Float, Unicode

from . import reprs
from .render_scheduler import DEFAULT_INTERVAL, Throttle, ThrottledView

if TYPE_CHECKING:
    import pandas as pd

    from ..run import Run

TAB_TITLES = ("Logs", "Metrics", "Outputs")
LOGS_TAB, METRICS_TAB, OUTPUTS_TAB = range(3)


def html_widget(css_class: str, value: str = "") -> w.HTML:
    """An HTML widget with a CSS class (the DOM contract the browser tests select on)."""
    widget = w.HTML(value)
    widget.add_class(css_class)
    return widget


def button(description: str, css_class: str, **kwargs: Any) -> w.Button:
    """A button with a CSS class and a click handler."""
    widget = w.Button(description=description, layout=w.Layout(width="auto"), **kwargs)
    widget.add_class(css_class)
    return widget


def enable(widget: w.Button, on: bool, style: str = "") -> None:
    """Enable or disable a button; a disabled one loses its colour so it reads as off at a glance."""
    widget.disabled = not on
    widget.button_style = style if on else ""


def submit(owner: Any, coro: Coroutine[Any, Any, Any], done: Callable[[BaseException | None, Any], None]) -> None:
    """Run ``coro`` through ``owner.submit`` (a Run or session); ``done(error, result)`` follows on its loop."""

    def finished(f: Any) -> None:
        error = f.exception() if not f.cancelled() else RuntimeError("cancelled")
        done(error, None if error else f.result())

    try:
        owner.submit(coro, finished)
    except RuntimeError:  # the loop has stopped: the session is closed
        coro.close()
        done(RuntimeError("the session is closed"), None)


class _Fetch:
    """A periodically refreshed remote value (logs, metrics): at most one request in flight."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.value: Any = None
        self.error: BaseException | None = None
        self.last = -float("inf")
        self.in_flight = False
        self.final = False  # a fetch that started after the run ended has completed
        self.version = 0

    def due(self, live: bool, wanted: bool) -> bool:
        if self.in_flight or self.final:
            return False
        if not live:
            return True  # once at the end, whatever tab is shown
        return wanted and time.monotonic() - self.last >= self.interval


class RunView(ThrottledView, w.VBox):
    """Live view of a :class:`~connector_nb.session.Run`. Display it, or just display the run in a kernel."""

    #: Mirrors of the run's state, for observers (not synced: the child widgets carry what is shown).
    phase = Unicode("")
    elapsed = Float(0.0)
    live = Bool(True)

    def __init__(self, run: Run, *, interval: float = DEFAULT_INTERVAL, logs_interval: float = 1.0,
                 metrics_interval: float = 5.0, tick: float = 1.0) -> None:
        super().__init__()
        self.run = run
        self.tick = tick
        self._build()
        self._logs = _Fetch(logs_interval)
        self._metrics = _Fetch(metrics_interval)
        self._metrics_shown = -1
        self._outputs_source: Any = None
        self._actions: dict[str, str] = {}  # pending action -> label
        self._action_error: tuple[str, BaseException] | None = None
        self._state: tuple[Any, ...] = ()
        self._throttle = Throttle(self._render, self._held, interval)
        self._unsubscribe = run.on_change(lambda _run: self._throttle.mark())
        self.tabs.observe(lambda _change: self._throttle.mark(), "selected_index")
        self._throttle.flush()

    # -- construction ----------------------------------------------------------------------------
    def _build(self) -> None:
        self.badge = html_widget("cnb-phase-badge")
        self.summary = html_widget("cnb-summary")
        self.cancel_button = button("Cancel", "cnb-cancel", icon="stop", button_style="danger")
        self.refresh_button = button("Refresh", "cnb-refresh", icon="refresh")
        self.step_button = button("Step", "cnb-step", icon="step-forward")
        self.cancel_button.on_click(lambda _b: self._act("cancel", self.run.cancel_async()))
        self.refresh_button.on_click(lambda _b: self._act("refresh", self.run.refresh_async()))
        self.step_button.on_click(lambda _b: self._act("step", self.run.refresh_async()))
        self.links = html_widget("cnb-log-links")
        self.error = html_widget("cnb-error")
        self.timeline = html_widget("cnb-timeline")
        self.logs = html_widget("cnb-logs", reprs.logs_html(None))
        self.metrics_table = html_widget("cnb-metrics-table", "<i>metrics load when this tab is shown</i>")
        self.metrics_plot = w.Image(format="png", layout=w.Layout(max_width="640px"))
        self.metrics_plot.add_class("cnb-metrics-plot")
        self.outputs = html_widget("cnb-outputs", "<i>no outputs yet</i>")
        self.tabs = w.Tab(children=[self.logs, w.VBox([self.metrics_table, self.metrics_plot]), self.outputs])
        self.tabs.titles = TAB_TITLES
        buttons = w.HBox([self.badge, self.cancel_button, self.refresh_button, self.step_button, self.summary],
                         layout=w.Layout(align_items="center", flex_flow="row wrap"))
        self.children = [buttons, self.links, self.error, self.timeline, self.tabs]
        self.add_class("cnb-run-view")

    def _held(self) -> list[w.Widget]:
        # Each child gets at most one trait change per render (unchanged values send nothing), so holding
        # the root is enough: a render is one message per changed child. Holding every child costs 2/3 of
        # a render for nothing.
        return [self]

    def _leaves(self) -> list[w.Widget]:
        return [self.badge, self.summary, self.cancel_button, self.refresh_button, self.step_button, self.links,
                self.error, self.timeline, self.logs, self.metrics_table, self.metrics_plot, self.outputs]

    # -- rendering (UI thread) -------------------------------------------------------------------
    def _render(self) -> None:
        run = self.run
        phase, live = run.phase, not run.done
        self.phase, self.elapsed, self.live = phase, run.elapsed, live
        self.summary.value = self._summary_html()
        state = (phase, len(run.transitions), live, run.resource, run.error, run.polling_error, run.autopoll,
                 self._action_error, *self._actions)
        if len(state) != len(self._state) or any(a is not b for a, b in zip(state, self._state)):
            self._state = state  # only a recorded change rebuilds these (a poll storm mostly is not one)
            self.badge.value = reprs.badge(phase)
            self.links.value = reprs.links_html(run.log_links)
            self.error.value = reprs.error_html(self._errors())
            self.error.layout.display = None if self.error.value else "none"
            self.timeline.value = reprs.timeline_html(run, current="now")
            self._render_buttons(phase)
        self._render_logs(live)
        self._render_metrics(live)
        self._render_outputs()
        if live:
            self._throttle.mark(delay=self.tick)  # keep elapsed time and logs moving between polls

    def _errors(self) -> list[BaseException | str]:
        errors: list[BaseException | str] = list(reprs.run_errors(self.run))
        if self._action_error is not None and self._action_error[1] not in errors:
            name, error = self._action_error
            errors.insert(0, f"{name} failed: {type(error).__name__}: {error}")
        return errors

    def _summary_html(self) -> str:
        run = self.run
        pending = " · ".join(f"<i>{label}…</i>" for label in self._actions.values())
        return (f"<span class='cnb-summary'><code>{reprs.esc(run.run_id)}</code> <i>{reprs.esc(run.task_type)}</i>"
                f" v{run.version} · <span class='cnb-elapsed'>{reprs.duration(run.elapsed)}</span>"
                f" · {run.get_calls} get calls · {reprs.esc(reprs.short(run.message))}"
                f"{' · ' + pending if pending else ''}</span>")

    def _render_buttons(self, phase: str) -> None:
        finished = not self.run.live
        enable(self.cancel_button, not finished and "cancel" not in self._actions, "danger")
        self.refresh_button.disabled = "refresh" in self._actions
        step_mode = not self.run.autopoll and not self.run.done
        self.step_button.layout.display = None if step_mode else "none"
        self.step_button.disabled = "step" in self._actions

    def _render_logs(self, live: bool) -> None:
        fetch = self._logs
        if fetch.due(live, self.tabs.selected_index == LOGS_TAB):
            self._start(fetch, self.run.logs_async(), live)
        if fetch.error is not None:
            self.logs.value = reprs.logs_html(getattr(fetch.value, "lines", None),
                                              f"logs not available: {fetch.error}")
        elif fetch.value is not None:
            self.logs.value = reprs.logs_html(fetch.value.lines)

    def _render_metrics(self, live: bool) -> None:
        fetch = self._metrics
        shown = self.tabs.selected_index == METRICS_TAB
        if shown and fetch.due(live, True):
            self._start(fetch, self.run.metrics_async(), live)
        if fetch.error is not None:
            self.metrics_table.value = f"<i>metrics not available: {reprs.esc(fetch.error)}</i>"
        elif fetch.value is not None and fetch.version != self._metrics_shown:
            self._metrics_shown = fetch.version
            self.metrics_table.value = metrics_table_html(fetch.value)
            self.metrics_plot.value = metrics_png(fetch.value)

    def _render_outputs(self) -> None:
        resource = self.run.resource
        if resource is None or resource is self._outputs_source or resource.outputs is None:
            return
        self._outputs_source = resource
        try:
            self.outputs.value = reprs.values_html(self.run.outputs, "cnb-outputs")
        except Exception as e:  # e.g. a dataset file that cannot be read
            self.outputs.value = reprs.error_html([e])

    # -- remote work (engine loop) ---------------------------------------------------------------
    def _start(self, fetch: _Fetch, coro: Coroutine[Any, Any, Any], live: bool) -> None:
        fetch.in_flight, fetch.last = True, time.monotonic()

        def done(error: BaseException | None, value: Any) -> None:
            fetch.in_flight, fetch.final = False, not live
            if error is None:
                fetch.value, fetch.error = value, None
            else:
                fetch.error = error
            fetch.version += 1
            self._throttle.mark()

        submit(self.run, coro, done)

    def _act(self, name: str, coro: Coroutine[Any, Any, Any]) -> None:
        """A button: submit and return at once; the outcome is shown by the next render."""
        if name in self._actions:
            coro.close()
            return
        self._actions[name] = {"cancel": "cancelling", "refresh": "refreshing", "step": "stepping"}[name]
        self._action_error = None

        def done(error: BaseException | None, _value: Any) -> None:
            self._actions.pop(name, None)
            self._action_error = (name, error) if error is not None else None
            self._throttle.mark()

        self._throttle.mark()
        submit(self.run, coro, done)

    def close(self) -> None:
        """Stop updates and close the widgets."""
        self._stop_updates()
        for child in [*getattr(self, "children", ()), *(self._leaves() if hasattr(self, "outputs") else ())]:
            child.close()
        super().close()


# ---------------------------------------------------------------------------------------------- metrics


def metrics_table_html(frame: pd.DataFrame, max_rows: int = 200) -> str:
    """The latest metric points as an HTML table."""
    if frame.empty:
        return "<i class='cnb-metrics'>no metrics</i>"
    note = f"<div>last {max_rows} of {len(frame)} points</div>" if len(frame) > max_rows else ""
    return note + str(frame.tail(max_rows).to_html(index=False, border=0, classes="cnb-metrics"))


def metrics_png(frame: pd.DataFrame) -> bytes:
    """One line per metric (and label set) over time, drawn with Agg: no pyplot, no display side effects."""
    if frame.empty:
        return b""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return b""
    labels = [c for c in frame.columns if c not in ("metric", "timestamp", "value")]
    fig = Figure(figsize=(6, 2.6), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for key, group in frame.groupby(["metric", *labels], sort=True):
        name = " ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        ax.plot(group["timestamp"], group["value"], marker=".", label=name)
    ax.legend(fontsize="small", loc="best")
    ax.tick_params(labelsize="small")
    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


__all__ = ["TAB_TITLES", "RunView", "metrics_png", "metrics_table_html"]
