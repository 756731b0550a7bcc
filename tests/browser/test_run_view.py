"""The live RunView in a real JupyterLab: phases advance by themselves, Cancel calls delete, logs show up.

Everything is read from the rendered DOM with generous timeouts; nothing asserts on wall-clock time.
"""

from __future__ import annotations

import re
from itertools import groupby
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import cell, open_notebook, run_cell, screenshot, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CELLS = [
    "import connector_nb\n"
    "from connector_nb import Session\n"
    "session = Session()  # in-process, with the example connectors\n"
    "run = session.launch('sleep', seconds=4)\n"
    "run",
    "run2 = session.launch('sleep', seconds=60)\nrun2",
    "print(run2.phase, run2.transitions[-1].message)",
]
# The run's own badge; the timeline rows carry badges with the same class.
BADGE = ".cnb-phase-badge[data-phase]:not(.cnb-timeline *)"
# Records every phase each RunView's badge shows, so a short-lived phase cannot slip between two polls of
# a Playwright assertion. Run views are indexed in document order, i.e. by cell.
PHASE_RECORDER = """
window.__cnbPhases = [];
new MutationObserver(() => {
  document.querySelectorAll('.cnb-run-view').forEach((view, i) => {
    const badge = view.querySelector(%r);
    const seen = (window.__cnbPhases[i] ||= []);
    const phase = badge && badge.dataset.phase;
    if (phase && seen[seen.length - 1] !== phase) seen.push(phase);
  });
}).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
""" % BADGE  # noqa: UP031 - JS braces make format() and f-strings noisier


def run_view(page: Any, index: int) -> Any:
    return cell(page, index).locator(".jp-OutputArea-output .cnb-run-view").first


def recorded_phases(page: Any, index: int) -> list[str]:
    return page.evaluate("i => (window.__cnbPhases[i] || []).slice()", index)


def timeline_phases(view: Any) -> list[str]:
    phases = view.locator("table.cnb-timeline [data-phase]").evaluate_all("els => els.map(e => e.dataset.phase)")
    return [phase for phase, _ in groupby(phases)]


def show_logs(view: Any) -> Any:
    view.locator(".lm-TabBar-tab", has_text=re.compile(r"^Logs$")).click()
    return view.locator("pre.cnb-logs")


def test_run_view_live_phases_cancel_and_logs(lab_server, browser_page):
    page = browser_page
    page.add_init_script(PHASE_RECORDER)
    open_notebook(page, lab_server, write_notebook(lab_server.root_dir, "run_view", CELLS))

    check_run_advances_by_itself(page)
    check_cancel_aborts(page)
    screenshot(page, "run_view")


def check_run_advances_by_itself(page: Any) -> None:
    run_cell(page, 0)
    view = run_view(page, 0)
    expect(view.locator(BADGE)).to_have_attribute("data-phase", "SUCCEEDED", timeout=90_000)

    # Only the first cell ran: every change after it was pushed by the kernel.
    seen = recorded_phases(page, 0)
    assert "RUNNING" in seen and seen[-1] == "SUCCEEDED", seen
    assert seen.index("RUNNING") < seen.index("SUCCEEDED"), seen
    for later in (1, 2):
        expect(cell(page, later).locator(".jp-InputArea-prompt")).to_have_text("[ ]:")

    expect(view.locator(BADGE)).to_have_text("SUCCEEDED")
    expect(view.locator("table.cnb-timeline")).to_contain_text("SUCCEEDED")
    assert timeline_phases(view) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    expect(show_logs(view)).to_contain_text("tick")


def check_cancel_aborts(page: Any) -> None:
    run_cell(page, 1)
    view = run_view(page, 1)
    expect(view.locator(BADGE)).to_have_attribute("data-phase", "RUNNING")
    cancel = view.locator("button.cnb-cancel", has_text="Cancel")
    expect(cancel).to_be_enabled()
    cancel.click()

    expect(view.locator(BADGE)).to_have_attribute("data-phase", "ABORTED")
    expect(cancel).to_be_disabled()
    assert timeline_phases(view)[-1] == "ABORTED"
    # The sleep connector logs "cancelled by delete" only when its delete was called.
    logs = show_logs(view)
    expect(logs).to_contain_text("tick")
    expect(logs).to_contain_text("cancelled by delete")

    output = run_cell(page, 2).locator(".jp-OutputArea-output")
    expect(output).to_contain_text(re.compile(r"^ABORTED .*cancelled"))
