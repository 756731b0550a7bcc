"""Widgets without a browser: ipywidgets' DummyComm records every message a widget would send."""

from __future__ import annotations

import re

import ipywidgets
import pandas as pd
import pytest
from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

from connector_nb import ConnectorRegistry, Session
from connector_nb.errors import NotSupportedError
from connector_nb.examples import CONNECTORS
from connector_nb.testing import FakeConnector, fast_policy, wait_until
from connector_nb.ui.dashboard import Dashboard
from connector_nb.ui.launch_panel import LaunchPanel
from connector_nb.ui.progress import Progress
from connector_nb.ui.render_scheduler import Throttle, wait_idle
from connector_nb.ui.run_view import CLOSED_NOTE, LOGS_TAB, METRICS_TAB, OUTPUTS_TAB, TAB_TITLES, RunView


@pytest.fixture(autouse=True)
def dummy_comm():
    setup_test_comm()
    yield
    teardown_test_comm()


@pytest.fixture
def make_session(tmp_path):
    sessions = []

    def make(*connectors, **options):
        options.setdefault("poll", fast_policy())
        session = Session(registry=ConnectorRegistry([*connectors, *CONNECTORS]), output_dir=str(tmp_path), **options)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close(cancel_running=True)


def descendants(widget):
    """The widget and every widget under it (children, tab pages, layouts)."""
    found, todo = [], [widget]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found.append(current)
        todo.extend(getattr(current, "children", ()))
        layout = getattr(current, "layout", None)
        if isinstance(layout, ipywidgets.Widget):
            todo.append(layout)
    return found


def messages(widget) -> int:
    return sum(len(w.comm.messages) for w in descendants(widget) if w.comm is not None)


def test_badge_and_timeline_follow_the_run_with_no_further_cell(make_session):
    fake = FakeConnector(script=["RUNNING", "RUNNING", "SUCCEEDED"])
    run = make_session(fake).launch("fake")
    view = RunView(run)
    assert "cnb-run-view" in view._dom_classes
    # Nothing but the engine and UI threads move the view from here on.
    wait_until(lambda: "data-phase='SUCCEEDED'" in view.html.value, what="badge SUCCEEDED")
    assert ">SUCCEEDED</span>" in view.html.value
    assert "class='cnb-phase-badge'" in view.html.value
    for phase in ("QUEUED", "RUNNING", "SUCCEEDED"):
        assert phase in view.html.value
    assert "class='cnb-timeline'" in view.html.value
    assert view.phase == "SUCCEEDED" and view.live is False
    assert view.cancel_button.disabled
    assert view.tabs.titles == TAB_TITLES == ("Logs", "Metrics", "Outputs")


def test_cancel_button_calls_delete_and_ends_aborted(make_session):
    fake = FakeConnector(script=["RUNNING"])
    run = make_session(fake).launch("fake")
    view = RunView(run)
    assert view.cancel_button.description == "Cancel" and "cnb-cancel" in view.cancel_button._dom_classes
    view.cancel_button.click()  # returns at once: the delete runs on the engine loop
    wait_until(lambda: run.phase == "ABORTED", what="run ABORTED")
    assert ("delete", "job-1") in fake.calls
    wait_until(lambda: "data-phase='ABORTED'" in view.html.value, what="badge ABORTED")
    wait_until(lambda: view.cancel_button.disabled, what="cancel disabled")
    assert view.cancel_button.button_style == ""  # a disabled button loses its colour


def test_refresh_button_calls_get_and_step_mode_shows_resources(make_session):
    fake = FakeConnector(script=["RUNNING", "SUCCEEDED"])
    run = make_session(fake).launch("fake", autopoll=False)
    view = RunView(run)
    assert view.step_button in view.children  # shown in step mode
    view.step_button.click()
    wait_until(lambda: run.get_calls == 1, what="one get")
    wait_until(lambda: "Resource(" in view.html.value, what="raw resource in timeline")
    view.refresh_button.click()
    wait_until(lambda: "data-phase='SUCCEEDED'" in view.html.value, what="badge SUCCEEDED")
    wait_until(lambda: view.step_button not in view.children, what="step hidden")


def test_failed_action_is_shown_in_the_view(make_session):
    fake = FakeConnector(script=["RUNNING"], raises={"delete": RuntimeError("delete refused")})
    run = make_session(fake).launch("fake")
    view = RunView(run)
    view.cancel_button.click()
    wait_until(lambda: "delete refused" in view.html.value, what="cancel error shown")
    assert "cnb-error" in view.html.value and run.phase == "RUNNING"


def test_logs_tab_shows_log_lines(make_session):
    fake = FakeConnector(script=["RUNNING", "SUCCEEDED"], logs=[["hello", "world"], ["third line"]])
    run = make_session(fake).launch("fake")
    view = RunView(run)
    assert view.tabs.selected_index is None and fake.calls.count(("get_logs", "job-1")) == 0  # lazy
    view.tabs.selected_index = LOGS_TAB
    logs = view.page(LOGS_TAB)
    wait_until(lambda: "third line" in logs.value, what="logs")
    assert "<pre class='cnb-logs'" in logs.value and "hello\nworld\nthird line" in logs.value
    assert "<span class='cnb-log-count'>3 lines</span>" in logs.value and "cnb-copy-logs" in logs.value


def test_metrics_tab_renders_a_table_and_an_image(make_session):
    run = make_session(FakeConnector()).launch("fake")
    run.wait(timeout=10)
    view = RunView(run)
    view.tabs.selected_index = METRICS_TAB
    page = view.page(METRICS_TAB)
    wait_until(lambda: "data:image/png;base64,iVBOR" in page.value, what="metrics plot")
    # the plot first, then the compact table with times to the millisecond and elapsed seconds
    assert page.value.index("<img") < page.value.index("<table class='cnb-metrics-table'")
    assert re.search(r"<td[^>]*>\d\d:\d\d:\d\d\.\d{3}</td><td[^>]*>-?\d+\.\d{3}s</td>", page.value)
    assert "load" in page.value and "1970" not in page.value


def test_metrics_tab_of_a_connector_without_metrics_says_so(make_session):
    fake = FakeConnector(raises={"get_metrics": NotSupportedError("no metrics here")})
    run = make_session(fake).launch("fake")
    run.wait(timeout=10)
    view = RunView(run)
    view.tabs.selected_index = METRICS_TAB
    wait_until(lambda: "reports no metrics" in view.page(METRICS_TAB).value, what="no metrics note")
    assert "<img" not in view.page(METRICS_TAB).value and "cnb-error" not in view.page(METRICS_TAB).value


def test_a_view_of_a_closed_session_says_so_in_one_line(make_session):
    session = make_session(FakeConnector(script=["RUNNING"]))
    run = session.launch("fake")
    view = RunView(run)
    wait_until(lambda: run.phase == "RUNNING", what="running")
    session.close()
    view.tabs.selected_index = METRICS_TAB
    wait_until(lambda: CLOSED_NOTE in view.html.value, what="closed note")
    wait_until(lambda: view.page(METRICS_TAB).value == CLOSED_NOTE, what="closed note in the tab")
    assert view.cancel_button.disabled and view.refresh_button.disabled
    assert "cnb-error" not in view.html.value and "<img" not in view.page(METRICS_TAB).value
    assert "Re-run the cell that creates the session" in CLOSED_NOTE and "\n" not in CLOSED_NOTE


def test_a_view_is_a_handful_of_widgets_and_fetches_nothing_until_a_tab_opens(make_session, monkeypatch):
    fake = FakeConnector(script=["RUNNING"])
    runs = make_session(fake).launch_many("fake", [{} for _ in range(20)])
    RunView(runs[0]).close()  # the shared layouts and styles exist from here on
    opened, open_comm = [], ipywidgets.Widget.open

    def counting_open(widget):
        opened.append(type(widget).__name__)
        open_comm(widget)

    monkeypatch.setattr(ipywidgets.Widget, "open", counting_open)
    views = [RunView(run) for run in runs]
    made = len(opened) / len(views)
    # root, one HTML (header line and body), Cancel, Refresh, tabs: layouts, styles and placeholders are shared
    assert made == 5, f"{made} widgets per view"
    wait_idle()
    assert not any(method in ("get_logs", "get_metrics") for method, _ in fake.calls)
    views[0].tabs.selected_index = LOGS_TAB
    wait_until(lambda: ("get_logs", "job-1") in fake.calls, what="logs of the open tab")
    assert all(job == "job-1" for method, job in fake.calls if method == "get_logs")


def test_outputs_tab_shows_a_dataframe(make_session):
    frame = pd.DataFrame({"city": ["Paris", "Rome"], "trips": [3, 4]})
    run = make_session(FakeConnector(outputs={"table": frame, "count": 2})).launch("fake")
    view = RunView(run)
    view.tabs.selected_index = OUTPUTS_TAB
    wait_until(lambda: "Paris" in view.page(OUTPUTS_TAB).value, what="outputs")
    assert "<table" in view.page(OUTPUTS_TAB).value and "count" in view.page(OUTPUTS_TAB).value


def test_connector_exception_is_shown_with_its_traceback(make_session):
    fake = FakeConnector(script=[RuntimeError("boom in get")])
    run = make_session(fake, poll=fast_policy(max_get_errors=2)).launch("fake")
    view = RunView(run)
    wait_until(lambda: run.done, what="polling stopped")
    wait_until(lambda: "boom in get" in view.html.value, what="error shown")
    assert "Traceback" in view.html.value and "cnb-error" in view.html.value
    assert "RuntimeError" in view.html.value


def test_launch_panel_fields_are_typed_per_interface(make_session):
    fake = FakeConnector(input_types={"n": int, "x": float, "name": str, "flag": bool, "xs": list[int],
                                      "maybe": int | None, "api_token": str})
    panel = LaunchPanel(make_session(fake))
    panel.connector.value = ("fake", 0)
    kinds = {f.name: type(f.widget).__name__ for f in panel.fields}
    assert kinds == {"api_token": "Password", "flag": "Checkbox", "maybe": "Text", "n": "IntText",
                     "name": "Text", "x": "FloatText", "xs": "Textarea"}
    # in the connector's declared order, not the protobuf map's
    assert [f.name for f in panel.fields] == ["n", "x", "name", "flag", "xs", "maybe", "api_token"]


def test_launch_panel_defaults_from_input_defaults(make_session):
    panel = LaunchPanel(make_session())
    panel.connector.value = ("sleep", 0)
    fields = {f.name: f for f in panel.fields}
    assert type(fields["seconds"].widget).__name__ == "FloatText"
    assert fields["fail"].widget.value is False


def _panel_for_lists(make_session):
    fake = FakeConnector(script=["RUNNING", "SUCCEEDED"], input_types={"n": int, "xs": list[int]})
    session = make_session(fake)
    panel = LaunchPanel(session)
    panel.connector.value = ("fake", 0)
    return session, panel, {f.name: f.widget for f in panel.fields}


def test_launch_panel_bad_json_is_an_inline_error(make_session):
    session, panel, fields = _panel_for_lists(make_session)
    fields["xs"].value = "[1, 2"
    panel.launch_button.click()
    assert "invalid JSON" in panel.form_error.value and "xs" in panel.form_error.value
    assert "cnb-form-error" in panel.form_error._dom_classes and "Traceback" not in panel.form_error.value
    fields["xs"].value = "[1]"
    panel.custom.value = "{oops"
    panel.launch_button.click()
    assert "custom" in panel.form_error.value
    assert session.runs == []


def test_launch_panel_wrong_types_are_an_inline_error(make_session):
    session, panel, fields = _panel_for_lists(make_session)
    fields["xs"].value = '["a", "b"]'
    panel.launch_button.click()
    wait_until(lambda: "xs" in panel.form_error.value, what="input error shown")
    assert "Traceback" not in panel.form_error.value and session.runs == []
    assert not panel.launch_button.disabled


def test_launch_panel_launch_adds_a_run_view(make_session):
    session, panel, fields = _panel_for_lists(make_session)
    fields["n"].value = 3
    fields["xs"].value = "[1, 2]"
    panel.launch_button.click()
    wait_until(lambda: len(panel.run_views) == 1, what="a run view")
    view = panel.run_views[0]
    assert isinstance(view, RunView) and view.run is session.runs[0]
    assert view.run.inputs == {"n": 3, "xs": [1, 2]}
    assert panel.form_error.value == ""
    wait_until(lambda: "data-phase='SUCCEEDED'" in view.html.value, what="launched run succeeded")


def test_launch_panel_of_a_closed_session_says_what_to_rerun(make_session):
    session, panel, _fields = _panel_for_lists(make_session)
    session.close()
    panel.launch_button.click()
    assert "This session is closed: re-run the cell that creates the session" in panel.form_error.value
    assert "Traceback" not in panel.form_error.value and "RuntimeError" not in panel.form_error.value
    assert panel.form_error.value.count("<div") == 1 and session.runs == []


def test_launch_panel_unknown_task_type_inline(make_session):
    panel = LaunchPanel(make_session())
    panel.connector.options = [("ghost", ("ghost", 0))]
    panel.connector.index = 0
    assert "ghost" in panel.form_error.value


def test_dashboard_counts_row_cancel_and_cancel_all(make_session):
    fake = FakeConnector(script=["RUNNING", "SUCCEEDED"])
    forever = FakeConnector("forever", script=["RUNNING"])
    session = make_session(fake, forever)
    board = Dashboard(session)
    done = [session.launch("fake") for _ in range(3)]
    live = [session.launch("forever") for _ in range(2)]
    for run in done:
        run.wait(timeout=10)
    wait_until(lambda: "RUNNING" in board.counts.value and "SUCCEEDED" in board.counts.value, what="counts")
    assert "5 runs" in board.counts.value and "cnb-counts" in board.counts._dom_classes
    assert "&nbsp;3" in board.counts.value and "&nbsp;2" in board.counts.value
    wait_until(lambda: board.shown == [r.run_id for r in [*done, *live][::-1]], what="newest first")
    slot = board.slots[board.shown.index(live[0].run_id)]
    assert not slot.cancel.disabled and slot.cancel.tooltip == f"cancel {live[0].run_id}"
    assert all(s.cancel.disabled for s in board.slots[2:5])  # finished runs cannot be cancelled
    slot.cancel.click()
    wait_until(lambda: live[0].phase == "ABORTED", what="one cancelled")
    assert live[1].phase == "RUNNING"
    wait_until(lambda: slot.cancel.disabled, what="row cancel disabled")
    board.cancel_all_button.click()
    wait_until(lambda: live[1].phase == "ABORTED", what="all cancelled")
    wait_until(lambda: "ABORTED</span>&nbsp;2" in board.counts.value, what="counts updated")
    assert sum(1 for method, _ in forever.calls if method == "delete") == 2


def test_dashboard_pages_filters_and_searches(make_session):
    session = make_session(FakeConnector(script=["SUCCEEDED"]), FakeConnector("forever", script=["RUNNING"]))
    finished = session.launch_many("fake", [{} for _ in range(25)])
    for run in finished:
        run.wait(timeout=10)
    live = session.launch_many("forever", [{} for _ in range(5)])
    wait_until(lambda: all(r.phase == "RUNNING" for r in live), what="live runs running")
    board = Dashboard(session, page_size=10)
    wait_until(lambda: "30 runs" in board.counts.value, what="counts")
    board.render_now()
    everything = [r.run_id for r in [*finished, *live][::-1]]
    assert board.shown == everything[:10] and len(board.cancels.children) == 10  # only this page's rows
    assert board.rows.value.count("class='cnb-run-row'") == 10
    assert "1–10 of 30" in board.page_label.value and "page 1 of 3" in board.page_label.value
    assert board.prev_button.disabled and not board.next_button.disabled
    board.next_button.click()
    assert board.shown == everything[10:20]
    board.go(2)
    assert board.shown == everything[20:30] and board.next_button.disabled
    board.phase_filter.value = "RUNNING"  # a filter starts again from the first page
    assert board.page == 0 and board.shown == [r.run_id for r in live[::-1]]
    assert "1–5 of 5" in board.page_label.value and len(board.cancels.children) == 5
    assert board.rows.value.count("class='cnb-run-row'") == 5
    board.phase_filter.value = "all"
    board.search.value = finished[7].run_id.upper()[-6:]
    assert board.shown == [finished[7].run_id]
    board.search.value = "no such run anywhere"
    assert board.shown == [] and "no matching runs" in board.page_label.value


def test_dashboard_has_no_preselected_run_and_an_html_fallback(make_session, monkeypatch):
    from ipywidgets.widgets.tests.utils import _widget_attrs

    # the test comm stubs out Widget._repr_mimebundle_: put the real one back for this test
    monkeypatch.setattr(ipywidgets.Widget, "_repr_mimebundle_", _widget_attrs["_repr_mimebundle_"])
    session = make_session(FakeConnector(script=["RUNNING"]))
    session.launch_many("fake", [{} for _ in range(3)])
    board = Dashboard(session)
    assert not hasattr(board, "live_runs")  # no dropdown choosing a run for the user
    bundle = board._repr_mimebundle_()
    assert {"text/plain", "text/html", "application/vnd.jupyter.widget-view+json"} <= set(bundle)
    assert "3 runs" in bundle["text/plain"] and "class='cnb-runs'" in bundle["text/html"]
    assert "Dashboard(children" not in bundle["text/plain"]


def test_dashboard_chart_samples_counts_over_time(make_session):
    session = make_session(FakeConnector(script=["RUNNING", "SUCCEEDED"]))
    board = Dashboard(session, tick=0.05)
    for run in session.launch_many("fake", [{} for _ in range(3)]):
        run.wait(timeout=10)
    wait_until(lambda: "<svg class='cnb-chart'" in board.chart.value, what="chart drawn")
    wait_until(lambda: "SUCCEEDED</title>" in board.chart.value, what="a SUCCEEDED line")


def test_dashboard_update_with_10000_runs_sends_under_50_kib(make_session):
    from connector_nb.ui.dashboard import row_html

    session = make_session(FakeConnector(script=["RUNNING"]), poll=fast_policy(max_interval=5.0))
    runs = session.launch_many("fake", [{} for _ in range(10_000)])
    board = Dashboard(session)
    board._throttle.close()  # only the renders below: one update
    board.render_now()
    for widget in descendants(board):
        widget.comm.messages.clear()
    runs[-1].cancel()  # a change on the shown page
    board.render_now()
    sent = [m for widget in descendants(board) for m in widget.comm.messages]
    size = sum(len(str(m)) for m in sent)
    assert 0 < size <= 50 * 1024, size
    assert "ABORTED" in str(sent) and len(row_html(runs[0])) < 400
    print(f"dashboard update with 10,000 runs: {size / 1024:.1f} KiB in {len(sent)} messages")


def test_view_coalesces_a_poll_storm(make_session):
    fake = FakeConnector(script=["RUNNING"] * 200 + ["SUCCEEDED"])
    session = make_session(fake, poll=fast_policy(first_interval=0.001, max_interval=0.002))
    run = session.launch("fake")
    # 2 renders a second: the storm is ~0.5 s, so a loaded CI machine has a wide margin below 40 messages
    view = RunView(run, interval=0.5)
    view.tabs.selected_index = LOGS_TAB
    run.wait(timeout=30)
    wait_idle()
    wait_until(lambda: view.phase == "SUCCEEDED", what="final render")
    wait_until(lambda: "world" in view.page(LOGS_TAB).value, what="final logs")
    wait_idle()
    assert run.get_calls >= 200
    sent = messages(view)
    assert sent < 40, f"{sent} messages for {run.get_calls} polls over {run.elapsed:.2f} s"
    assert view.renders <= 2 + 2 * run.elapsed * 1.5 + 3
    assert "data-phase='SUCCEEDED'" in view.html.value  # the terminal transition is never dropped
    updates = [m for w in descendants(view.html) for m in w.comm.messages]
    assert "SUCCEEDED" in str(updates[-1])


def test_throttle_caps_renders_and_always_flushes_the_last_change():
    import threading
    import time

    seen: list[int] = []
    state = {"n": 0}
    done = threading.Event()

    def render():
        seen.append(state["n"])
        if state["n"] == 500:
            done.set()

    throttle = Throttle(render, interval=0.05)
    start = time.monotonic()
    for i in range(1, 501):
        state["n"] = i
        throttle.mark()
        time.sleep(0.0005)
    assert done.wait(5)
    elapsed = time.monotonic() - start
    assert seen[-1] == 500
    assert len(seen) <= elapsed / 0.05 + 3


def test_progress_counts_runs(make_session):
    session = make_session(FakeConnector(script=["RUNNING", "SUCCEEDED"]))
    runs = session.launch_many("fake", [{} for _ in range(4)])
    bar = Progress(runs)
    wait_until(lambda: bar.bar.value == 4, what="progress done")
    assert bar.bar.max == 4 and "4/4 done" in bar.label.value and bar.bar.bar_style == "success"


def test_mimebundle_has_a_widget_view_inside_a_kernel(make_session, monkeypatch):
    from connector_nb.ui import display

    monkeypatch.setattr(display, "widgets_available", lambda: True)
    session = make_session(FakeConnector())
    run = session.launch("fake")
    bundle = display.run_mimebundle(run)
    assert {"text/plain", "text/html", display.WIDGET_MIME} <= set(bundle)
    assert bundle[display.WIDGET_MIME]["model_id"]
    assert display.run_mimebundle(run, exclude=[display.WIDGET_MIME]).keys() == {"text/plain", "text/html"}
    assert isinstance(display._VIEWS[run], RunView)
    board_bundle = display.session_mimebundle(session)
    assert display.WIDGET_MIME in board_bundle and isinstance(display._VIEWS[session], Dashboard)
