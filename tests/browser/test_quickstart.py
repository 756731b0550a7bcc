"""``01_quickstart`` with Run All in a real JupyterLab, then its launch panel, a log link and the Metrics tab.

Everything is read from the rendered DOM with generous timeouts; nothing asserts on wall-clock time.
"""

from __future__ import annotations

import re
import shutil
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import REPO_ROOT, open_notebook, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

BADGE = ".cnb-phase-badge[data-phase]:not(.cnb-timeline *)"
NOTEBOOK = "01_quickstart.ipynb"


def run_all(page: Any) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def code_cells(page: Any) -> Any:
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell")


def test_quickstart_run_all_then_launch_panel_and_log_link(lab_server, browser_page):
    page = browser_page
    shutil.copy(REPO_ROOT / "notebooks" / NOTEBOOK, lab_server.root_dir / NOTEBOOK)
    open_notebook(page, lab_server, NOTEBOOK)
    run_all(page)
    last = code_cells(page).last
    expect(last.locator(".jp-InputArea-prompt")).to_have_text(re.compile(r"\[\d+\]"), timeout=300_000)

    outputs = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output")
    expect(outputs.filter(has_text="Traceback")).to_have_count(0)
    expect(outputs.filter(has_text="the session is closed")).to_have_count(0)

    check_first_run_view(page)
    check_launch_panel_and_log_link(page, last)
    screenshot(page, "quickstart_run_all")


def check_first_run_view(page: Any) -> None:
    """The first run's view: finished, a readable Metrics tab (plot first, then a table), no broken image."""
    view = page.locator(".cnb-run-view").first
    expect(view.locator(BADGE)).to_have_attribute("data-phase", "SUCCEEDED")
    view.locator(".lm-TabBar-tab", has_text=re.compile(r"^Metrics$")).click()
    metrics = view.locator("div.cnb-metrics")
    expect(metrics.locator("img.cnb-metrics-plot")).to_be_visible()
    expect(metrics.locator("table.cnb-metrics-table")).to_contain_text(re.compile(r"\d\d:\d\d:\d\d\.\d{3}"))
    broken = page.evaluate("() => [...document.querySelectorAll('.jp-OutputArea-output img')]"
                           ".filter(i => i.complete && i.naturalWidth === 0).length")
    assert broken == 0, f"{broken} broken images"
    view.locator(".lm-TabBar-tab", has_text=re.compile(r"^Logs$")).click()
    logs = view.locator(".cnb-logs-box")
    expect(logs.locator(".cnb-log-count")).to_have_text(re.compile(r"^\d+ lines?"))
    expect(logs.locator("pre.cnb-logs")).to_contain_text("sleep")


def check_launch_panel_and_log_link(page: Any, ui_cell: Any) -> None:
    panel = ui_cell.locator(".cnb-launch-panel")
    select = panel.locator(".cnb-connector select")
    option = select.locator('option[value^="sleep (v0) "]')
    expect(option).to_have_count(1)
    select.select_option(value=option.get_attribute("value"))
    seconds = panel.locator(".cnb-form .widget-inline-hbox").filter(
        has=page.locator("label", has_text=re.compile(r"^seconds \("))).locator("input").first
    seconds.fill("1")
    seconds.press("Tab")
    panel.locator("button.cnb-launch").click()

    view = panel.locator(".cnb-run-view").first
    expect(view.locator(BADGE)).to_have_attribute("data-phase", "SUCCEEDED", timeout=90_000)
    expect(panel.locator(".cnb-form-error")).not_to_contain_text("closed")
    row = ui_cell.locator(".cnb-dashboard .cnb-run-row").first
    expect(row).to_have_attribute("data-run-id", view.locator("span.cnb-summary code").first.inner_text())

    link = view.locator("a.cnb-file-log", has_text="sleep log")
    expect(link).to_have_attribute("target", "_blank")
    with page.context.expect_page() as opened:
        link.click()
    log_page = opened.value
    log_page.wait_for_load_state()
    assert "/connector-nb/logs/" in log_page.url and "file:" not in log_page.url
    expect(log_page.locator("body")).to_contain_text("sleep job")
    log_page.close()
