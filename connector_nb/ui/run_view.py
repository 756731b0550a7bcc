"""RunView: a live widget of one run (phase badge, timeline, buttons, logs/metrics/outputs tabs).

Updates come from ``run.on_change`` (engine thread), are coalesced by a :class:`Throttle` and rendered on
the shared UI thread; buttons submit coroutines to the engine loop and never wait on them, so a click
does not block the kernel.

A view is cheap to build (a notebook may show a thousand): five widgets sharing layouts and styles (one
HTML for the header line and the body, the buttons, the tabs), and tab pages made on first open. Logs and
metrics are fetched only while their tab is open.
"""

from __future__ import annotations

import base64
import io
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Coroutine, cast

import ipywidgets as w
from traitlets import Bool, Float, Unicode

from ..errors import NotSupportedError
from ..frames import clock
from . import reprs
from .render_scheduler import DEFAULT_INTERVAL, Throttle, ThrottledView

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd

    from ..run import Run

TAB_TITLES = ("Logs", "Metrics", "Outputs")
LOGS_TAB, METRICS_TAB, OUTPUTS_TAB = range(3)


_SHARED: dict[str, Any] = {}


def shared(kind: str) -> Any:
    """A Layout/style widget shared by many widgets (one comm instead of one each); never mutate it."""
    widget = _SHARED.get(kind)
    if widget is None or getattr(widget, "comm", None) is None:
        from ipywidgets.widgets.widget_string import HTMLStyle

        make = {"layout": w.Layout, "auto": lambda: w.Layout(width="auto"), "html_style": HTMLStyle,
                "button_style": w.ButtonStyle, "row": lambda: w.Layout(align_items="center", flex_flow="row wrap"),
                "full": lambda: w.Layout(width="100%"),
                "card": lambda: w.Layout(align_items="flex-start", flex_flow="row wrap"),
                "fill": lambda: w.Layout(flex="1 1 0%", min_width="0", margin="0"),  # the rest of a row, no more
                "grow": lambda: w.Layout(flex="1 1 auto", margin="0"),
                "column": lambda: w.Layout(margin="0", flex="0 0 auto"),
                "row_button": lambda: w.Layout(width="auto", height="28px", margin="0"),
                "placeholder": lambda: w.HTML(layout=shared("layout"), style=shared("html_style"))}[kind]
        widget = _SHARED[kind] = make()
    return widget


def html_widget(css_class: str, value: str = "", layout: Any = None) -> w.HTML:
    """An HTML widget with a CSS class (the DOM contract the browser tests select on)."""
    # Classes given at construction ride in the comm-open message; add_class would send an update.
    return w.HTML(value, layout=layout or shared("layout"), style=shared("html_style"), _dom_classes=(css_class,))


def button(description: str, css_class: str, **kwargs: Any) -> w.Button:
    """A button with a CSS class (shared layout and style unless given)."""
    kwargs.setdefault("layout", shared("auto"))
    kwargs.setdefault("style", shared("button_style"))
    return w.Button(description=description, _dom_classes=(css_class,), **kwargs)


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


def session_closed(owner: Any) -> bool:
    """Whether the session behind a run or session object has been closed."""
    session = getattr(owner, "session", owner)
    return bool(getattr(session, "closed", False))


#: The one line a widget of a closed session shows instead of errors.
CLOSED_NOTE = ("<div class='cnb-closed' style='color:#6c757d'>This session is closed, so this view no longer "
               "updates. Re-run the cell that creates the session, then this cell.</div>")


def _log_url_in_kernel() -> Callable[[str], str | None] | None:
    """How local log links open: through the Jupyter server, but only inside a kernel (which has one)."""
    from ._kernel import widgets_available

    if not widgets_available():
        return None
    from ..jupyter_server import log_url

    def url_for(uri: str) -> str | None:
        try:
            return log_url(uri)
        except OSError:  # an unwritable runtime folder: the link stays a plain name
            return None

    return url_for


#: Renders a second that the ticks of all live views may take together (phase changes are not counted).
TICK_BUDGET = 100.0
_TICKING: weakref.WeakSet[RunView] = weakref.WeakSet()


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
        self.shown = -1

    def due(self, live: bool) -> bool:
        if self.in_flight or self.final:
            return False
        return not live or time.monotonic() - self.last >= self.interval


class RunView(ThrottledView, w.VBox):
    """Live view of a :class:`~connector_nb.run.Run`. Display it, or just display the run in a kernel."""

    #: Mirrors of the run's state, for observers (not synced: the child widgets carry what is shown).
    phase = Unicode("")
    elapsed = Float(0.0)
    live = Bool(True)

    def __init__(self, run: Run, *, interval: float = DEFAULT_INTERVAL, logs_interval: float = 1.0,
                 metrics_interval: float = 5.0, tick: float = 1.0) -> None:
        self.run = run
        self.tick = tick
        self._logs = _Fetch(logs_interval)
        self._metrics = _Fetch(metrics_interval)
        self._pages: dict[int, w.HTML] = {}
        self._outputs_source: Any = None
        self._actions: dict[str, str] = {}  # pending action -> label
        self._action_error: tuple[str, BaseException] | None = None
        self._url_for = _log_url_in_kernel()
        self._seen: tuple[Any, ...] = ()
        closed, phase = session_closed(run), run.phase
        self._state = self._state_key(closed, phase)
        self._build(closed, phase)
        self._step_shown = self.step_button is not None
        super().__init__(children=self._row(self._step_shown), layout=shared("card"), _dom_classes=("cnb-run-view",))
        self.tabs.selected_index = None  # no page open: nothing fetched until one is asked for
        self.phase, self.elapsed, self.live = phase, run.elapsed, not run.done
        self._throttle = Throttle(self._render, self._held, interval)
        self._unsubscribe = run.on_change(self._on_change)
        self.tabs.observe(lambda _change: self._open_tab(), "selected_index")
        if not run.done and not closed:
            _TICKING.add(self)
            self._throttle.mark(delay=self._tick_delay())

    # -- construction ----------------------------------------------------------------------------
    def _build(self, closed: bool, phase: str) -> None:
        """The widgets, made with their first values (one comm-open message each, no updates after)."""
        # One HTML for the header line and the body: a widget costs ~0.3 ms to build, and a thousand views add up.
        self._body = self._body_html(closed)
        self.html = html_widget("cnb-run-html", self._html(closed, phase), layout=shared("fill"))
        self.cancel_button = button("Cancel", "cnb-cancel", icon="stop", **self._cancel_state(closed))
        self.refresh_button = button("Refresh", "cnb-refresh", icon="refresh", disabled=closed)
        self.step_button: w.Button | None = None  # made when the run is in step mode
        self.cancel_button.on_click(lambda _b: self._act("cancel", self.run.cancel_async()))
        self.refresh_button.on_click(lambda _b: self._act("refresh", self.run.refresh_async()))
        placeholder = shared("placeholder")
        self.tabs = w.Tab(children=[placeholder] * len(TAB_TITLES), titles=TAB_TITLES, layout=shared("full"))
        if not self.run.autopoll and not self.run.done and not closed:
            self._step_button()

    def _row(self, step_mode: bool) -> list[w.Widget]:
        step = [self.step_button] if step_mode and self.step_button is not None else []
        return [self.html, self.cancel_button, self.refresh_button, *step, self.tabs]

    def _step_button(self) -> w.Button:
        if self.step_button is None:
            self.step_button = button("Step", "cnb-step", icon="step-forward")
            self.step_button.on_click(lambda _b: self._act("step", self.run.refresh_async()))
        return self.step_button

    def _held(self) -> list[w.Widget]:
        # Each child gets at most one trait change per render (unchanged values send nothing), so holding
        # the root is enough: a render is one message per changed child.
        return [self]

    def page(self, index: int) -> w.HTML:
        """The HTML of tab ``index`` (made on first use)."""
        if index not in self._pages:
            css = ("cnb-logs-tab", "cnb-metrics", "cnb-outputs")[index]
            self._pages[index] = html_widget(css, "<i>loading…</i>")
            children = list(self.tabs.children)
            children[index] = self._pages[index]
            self.tabs.children = children
        return self._pages[index]

    def _open_tab(self) -> None:
        if self.tabs.selected_index is not None:
            self.page(self.tabs.selected_index)
        self._throttle.mark()

    # -- rendering (UI thread) -------------------------------------------------------------------
    def _render(self) -> None:
        run = self.run
        phase, closed = run.phase, session_closed(run)
        live = not run.done and not closed
        self.phase, self.elapsed, self.live = phase, run.elapsed, not run.done
        state = self._state_key(closed, phase)
        if len(state) != len(self._state) or any(a is not b for a, b in zip(state, self._state)):
            self._state = state  # only a recorded change rebuilds these (a poll storm mostly is not one)
            self._body = self._body_html(closed)
            self._render_buttons(closed)
        self.html.value = self._html(closed, phase)
        self._render_tab(self.tabs.selected_index, live, closed)
        if live:
            _TICKING.add(self)
            self._throttle.mark(delay=self._tick_delay())  # keep elapsed time and logs moving between polls
        else:
            _TICKING.discard(self)

    def _state_key(self, closed: bool, phase: str) -> tuple[Any, ...]:
        # ``phase`` is read once per render, before the transitions: the engine appends a transition before it
        # moves the phase, so a badge never shows a phase that the timeline beside it lacks.
        run = self.run
        return (phase, len(run.transitions), run.done, run.resource, run.error, run.polling_error, run.autopoll,
                self._action_error, closed, *self._actions)

    def _html(self, closed: bool, phase: str) -> str:
        """The header line (badge, id, elapsed...) over the body (log links, errors, timeline)."""
        header = reprs.badge(phase) + self._summary_html(closed)
        return f"<div class='cnb-header'>{header}</div><div class='cnb-body'>{self._body}</div>"

    def _body_html(self, closed: bool) -> str:
        errors = "" if closed else reprs.error_html(self._errors())
        links = reprs.links_html(self.run.log_links, self._url_for)
        return links + errors + reprs.timeline_html(self.run, current="now")

    def _render_tab(self, selected: int | None, live: bool, closed: bool) -> None:
        if selected == OUTPUTS_TAB:
            self._render_outputs()
        elif selected is not None:
            fetch = self._logs if selected == LOGS_TAB else self._metrics
            if closed and fetch.value is None:  # one line saying why, never a fetch error
                self.page(selected).value = CLOSED_NOTE
            elif selected == LOGS_TAB:
                self._render_logs(live)
            else:
                self._render_metrics(live)

    def _on_change(self, run: Run) -> None:
        """On the engine thread, after every poll: render only a recorded change (a poll mostly is not one).

        Counters (get calls, elapsed, the latest message) follow on the next tick; a thousand views of busy
        runs would otherwise render on every poll and take the engine's time.
        """
        seen = (len(run.transitions), run.error, run.polling_error, run.done, run.unreachable_since)
        if len(seen) != len(self._seen) or any(a is not b for a, b in zip(seen, self._seen)):
            self._seen = seen
            self._throttle.mark()

    def _tick_delay(self) -> float:
        # Ticks of all live views together stay under TICK_BUDGET renders a second: with a thousand views,
        # elapsed times move every few seconds and the engine keeps its pace.
        return max(self.tick, len(_TICKING) / TICK_BUDGET)

    def _errors(self) -> list[BaseException | str]:
        errors: list[BaseException | str] = list(reprs.run_errors(self.run))
        if self._action_error is not None and self._action_error[1] not in errors:
            name, error = self._action_error
            errors.insert(0, f"{name} failed: {type(error).__name__}: {error}")
        return errors

    def _summary_html(self, closed: bool) -> str:
        run = self.run
        pending = " · ".join(f"<i>{label}…</i>" for label in self._actions.values())
        summary = (f" <span class='cnb-summary'><code>{reprs.esc(run.run_id)}</code> <i>{reprs.esc(run.task_type)}"
                   f"</i> v{run.version} · <span class='cnb-elapsed'>{reprs.duration(run.elapsed)}</span>"
                   f" · {run.get_calls} get calls · {reprs.esc(reprs.short(run.message))}"
                   f"{' · ' + pending if pending else ''}</span>")
        return summary + (CLOSED_NOTE if closed and not run.done else "")

    def _cancel_state(self, closed: bool) -> dict[str, Any]:
        on = self.run.live and not closed and "cancel" not in self._actions
        return {"disabled": not on, "button_style": "danger" if on else ""}

    def _render_buttons(self, closed: bool) -> None:
        for name, value in self._cancel_state(closed).items():
            setattr(self.cancel_button, name, value)
        self.refresh_button.disabled = closed or "refresh" in self._actions
        step_mode = not self.run.autopoll and not self.run.done and not closed
        if step_mode:
            self._step_button().disabled = "step" in self._actions
        if self._step_shown != step_mode:
            self._step_shown = step_mode
            self.set_trait("children", self._row(step_mode))

    def _render_logs(self, live: bool) -> None:
        fetch = self._logs
        if fetch.due(live):
            self._start(fetch, self.run.logs_async(), live)
        if fetch.version == fetch.shown:
            return
        fetch.shown = fetch.version
        lines = getattr(fetch.value, "lines", None)
        note = f"logs not available: {fetch.error}" if fetch.error is not None else ""
        self.page(LOGS_TAB).value = reprs.logs_html(lines, note, follow=live)

    def _render_metrics(self, live: bool) -> None:
        fetch = self._metrics
        if fetch.due(live):
            self._start(fetch, self.run.metrics_async(), live)
        if fetch.version == fetch.shown:
            return
        fetch.shown = fetch.version
        if isinstance(fetch.error, NotSupportedError):
            self.page(METRICS_TAB).value = "<i class='cnb-metrics-none'>this connector reports no metrics</i>"
        elif fetch.error is not None:
            self.page(METRICS_TAB).value = f"<i>metrics not available: {reprs.esc(fetch.error)}</i>"
        elif fetch.value is not None:
            self.page(METRICS_TAB).value = metrics_html(fetch.value, self.run.started_at)

    def _render_outputs(self) -> None:
        resource = self.run.resource
        page = self.page(OUTPUTS_TAB)
        if resource is None or resource.outputs is None:
            page.value = "<i>no outputs yet</i>"
            return
        if resource is self._outputs_source:
            return
        self._outputs_source = resource
        try:
            page.value = reprs.values_html(self.run.outputs, "cnb-outputs")
        except Exception as e:  # e.g. a dataset file that cannot be read
            page.value = reprs.error_html([e])

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
        """Stop updates and close the widgets (shared layouts and placeholders stay)."""
        self._stop_updates()
        _TICKING.discard(self)
        owned = [getattr(self, "html", None), getattr(self, "tabs", None), getattr(self, "cancel_button", None),
                 getattr(self, "refresh_button", None), getattr(self, "step_button", None),
                 *getattr(self, "_pages", {}).values()]
        for child in owned:
            if child is not None:
                child.close()
        super().close()


# ---------------------------------------------------------------------------------------------- metrics


def _elapsed(frame: pd.DataFrame, start: datetime | None) -> pd.Series:
    """Seconds of each point since ``start`` (or since the first point)."""
    import pandas as pd

    origin = pd.Timestamp(start) if start is not None else frame["timestamp"].min()
    return cast("pd.Series", (frame["timestamp"] - origin).dt.total_seconds())


def _series_names(frame: pd.DataFrame) -> pd.Series:
    labels = [c for c in frame.columns if c not in ("metric", "timestamp", "value")]
    if not labels:
        return frame["metric"].astype(str)
    return cast("pd.Series", frame[["metric", *labels]].astype(str).agg(" ".join, axis=1))


def metrics_table_html(frame: pd.DataFrame, start: datetime | None = None, max_rows: int = 50) -> str:
    """A compact table: one row per sample time (to the millisecond), one column per metric and label set."""
    if frame.empty:
        return "<i class='cnb-metrics-none'>this connector reported no metrics</i>"
    table = frame.assign(series=_series_names(frame), t=_elapsed(frame, start))
    wide = table.pivot_table(index=["timestamp", "t"], columns="series", values="value", aggfunc="last")
    wide = wide.sort_index().tail(max_rows)
    head = ["time", "elapsed", *[str(c) for c in wide.columns]]
    rows = [[clock(ts.to_pydatetime()), f"{t:.3f}s", *[("" if v != v else f"{v:g}") for v in values]]
            for (ts, t), values in zip(wide.index, wide.to_numpy())]
    note = (f"<div style='color:#6c757d'>last {len(wide)} of {table['timestamp'].nunique()} sample times</div>"
            if table["timestamp"].nunique() > len(wide) else "")
    return note + reprs.plain_table("cnb-metrics-table", head, rows)


def metrics_png(frame: pd.DataFrame, start: datetime | None = None) -> bytes:
    """One line per metric (and label set) against elapsed seconds, drawn with Agg (no pyplot side effects)."""
    if frame.empty:
        return b""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return b""
    table = frame.assign(series=_series_names(frame), t=_elapsed(frame, start))
    fig = Figure(figsize=(6, 2.4), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, group in table.groupby("series", sort=True):
        ax.plot(group["t"], group["value"], marker=".", label=str(name))
    ax.set_xlabel("seconds since launch", fontsize="small")
    ax.legend(fontsize="small", loc="best")
    ax.tick_params(labelsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def metrics_html(frame: pd.DataFrame, start: datetime | None = None) -> str:
    """The Metrics tab: the plot first (an inline image only when there is one), then the compact table."""
    png = metrics_png(frame, start)
    plot = (f"<img class='cnb-metrics-plot' alt='metrics plot' style='max-width:640px' "
            f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>" if png else "")
    return f"<div class='cnb-metrics'>{plot}{metrics_table_html(frame, start)}</div>"


__all__ = ["CLOSED_NOTE", "TAB_TITLES", "RunView", "metrics_html", "metrics_png", "metrics_table_html"]
