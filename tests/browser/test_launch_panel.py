"""``%connector ui`` in a real JupyterLab: the LaunchPanel launches runs, shows form errors inline, and the
Dashboard below it counts runs and cancels them.

Everything is read from the rendered DOM with generous timeouts; nothing asserts on wall-clock time.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import cell, open_notebook, run_cell, screenshot, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CELLS = [
    "%load_ext connector_nb\n"
    "from connector_nb import Session\n"
    "connector_session = Session()  # the magics use this variable\n"
    "%connector ui",
    "print('never run by these tests')",
]
# The run's own badge; the timeline rows carry badges with the same class.
BADGE = ".cnb-phase-badge[data-phase]:not(.cnb-timeline *)"
STDERR = '.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]'


def open_ui(lab_server: Any, page: Any, name: str) -> Any:
    """Run the ``%connector ui`` cell; returns the cell once the launch panel and dashboard are shown."""
    open_notebook(page, lab_server, write_notebook(lab_server.root_dir, name, CELLS))
    ui = run_cell(page, 0)
    expect(panel(page).locator(".cnb-connector select")).to_be_enabled()
    expect(dashboard(page)).to_be_visible()
    return ui


def panel(page: Any) -> Any:
    return cell(page, 0).locator(".jp-OutputArea-output .cnb-launch-panel").first


def dashboard(page: Any) -> Any:
    return cell(page, 0).locator(".jp-OutputArea-output .cnb-dashboard").first


def choose_sleep(page: Any) -> None:
    select = panel(page).locator(".cnb-connector select")
    # ipywidgets renders option labels with &nbsp;: select by the value attribute, which keeps plain spaces.
    option = select.locator('option[value^="sleep (v0) "]')
    expect(option).to_have_count(1)  # the options arrive after the dropdown itself is shown
    select.select_option(value=option.get_attribute("value"))
    expect(field(page, "seconds")).to_be_visible()
    expect(panel(page).locator(".cnb-form")).to_contain_text("fail (bool)")


def field(page: Any, name: str) -> Any:
    """The input of the form row labelled ``name (type)``."""
    row = panel(page).locator(".cnb-form .widget-inline-hbox").filter(
        has=page.locator("label", has_text=re.compile(rf"^{name} \(")))
    return row.locator("input, textarea").first


def type_into(target: Any, text: str) -> None:
    # ipywidgets sync text fields on "change", i.e. when the input loses focus.
    target.fill(text)
    target.press("Tab")


def launch(page: Any) -> None:
    button = panel(page).locator("button.cnb-launch")
    expect(button).to_be_enabled()
    button.click()


def expect_count(page: Any, phase: str, count: int) -> None:
    """The dashboard's counts show "<phase badge> count" (the count is the text right after the badge)."""
    counts = dashboard(page).locator("span.cnb-counts")
    expect(counts).to_have_text(re.compile(rf"(^|\s){phase}\s{count}(\s|$)"))


def form_error(page: Any) -> Any:
    return panel(page).locator("div.cnb-form-error:not(.jupyter-widgets)")


def assert_no_traceback(ui: Any) -> None:
    expect(ui.locator(STDERR).filter(has_text="Traceback")).to_have_count(0)
    expect(ui.locator(".jp-OutputArea-output")).not_to_contain_text("Traceback")


def test_launch_sleep_succeeds_and_shows_in_dashboard(lab_server, browser_page):
    page = browser_page
    open_ui(lab_server, page, "launch_panel_success")
    choose_sleep(page)
    type_into(field(page, "seconds"), "1")
    launch(page)

    view = panel(page).locator(".cnb-run-view").first
    expect(view.locator(BADGE)).to_have_attribute("data-phase", "SUCCEEDED", timeout=90_000)
    expect(panel(page).locator(".cnb-run-view")).to_have_count(1)
    run_id = view.locator("span.cnb-summary code").first.inner_text()
    assert run_id, "the RunView names its run"

    expect_count(page, "SUCCEEDED", 1)
    row = dashboard(page).locator(".cnb-run-row")
    expect(row).to_have_count(1)
    expect(row.locator("code")).to_have_text(run_id)
    expect(row.locator(".cnb-phase-badge")).to_have_attribute("data-phase", "SUCCEEDED")
    expect(view.locator("button.cnb-cancel")).to_be_disabled()
    expect(dashboard(page).locator("button.cnb-cancel-all")).to_be_disabled()
    expect(form_error(page)).to_have_count(0)
    # Only the %connector ui cell ran: every change after it was pushed by the kernel.
    expect(cell(page, 0).locator(".jp-InputArea-prompt")).to_have_text("[1]:")
    expect(cell(page, 1).locator(".jp-InputArea-prompt")).to_have_text("[ ]:")


def test_invalid_values_show_one_line_error_without_traceback(lab_server, browser_page):
    page = browser_page
    ui = open_ui(lab_server, page, "launch_panel_errors")
    choose_sleep(page)
    type_into(field(page, "seconds"), "1")

    # Read by the form itself: bad JSON in the custom editor.
    type_into(panel(page).locator(".cnb-custom textarea"), "{not json")
    launch(page)
    check_one_line_error(page, re.compile(r"^custom: invalid JSON: .+ at line 1 column \d+$"))

    # Rejected by the connector on the engine loop: a negative duration.
    type_into(panel(page).locator(".cnb-custom textarea"), "{}")
    type_into(field(page, "seconds"), "-5")
    launch(page)
    check_one_line_error(page, re.compile(r"seconds.*between 0.*-5"))

    expect(panel(page).locator(".cnb-run-view")).to_have_count(0)
    expect(dashboard(page).locator(".cnb-run-row")).to_have_count(0)

    # A valid launch afterwards clears the error.
    type_into(field(page, "seconds"), "0")
    launch(page)
    expect(panel(page).locator(".cnb-run-view")).to_have_count(1)
    expect(form_error(page)).to_have_count(0)
    assert_no_traceback(ui)


def check_one_line_error(page: Any, message: re.Pattern[str]) -> None:
    error = form_error(page)
    expect(error).to_have_count(1)
    expect(error).to_have_text(message)
    assert "\n" not in error.inner_text().strip(), error.inner_text()
    expect(error).not_to_contain_text("Traceback")


def test_cancel_all_aborts_every_live_run(lab_server, browser_page):
    page = browser_page
    ui = open_ui(lab_server, page, "launch_panel")
    choose_sleep(page)
    type_into(field(page, "seconds"), "60")
    for launched in (1, 2):
        launch(page)
        expect(panel(page).locator(".cnb-run-view")).to_have_count(launched)
    badges = panel(page).locator(f".cnb-run-view {BADGE}")
    for index in (0, 1):
        expect(badges.nth(index)).to_have_attribute("data-phase", "RUNNING")

    cancel_all = dashboard(page).locator("button.cnb-cancel-all")
    expect(cancel_all).to_be_enabled()
    cancel_all.click()

    expect_count(page, "ABORTED", 2)
    for index in (0, 1):
        expect(badges.nth(index)).to_have_attribute("data-phase", "ABORTED")
    expect(dashboard(page).locator(".cnb-dashboard-status")).to_contain_text("cancelled 2 runs")
    expect(cancel_all).to_be_disabled()
    assert_no_traceback(ui)
    screenshot(page, "launch_panel")
