"""The Dashboard with 10,000 runs of a fast connector in a real JupyterLab: filter, search, paging, per-row Cancel.

Also prints render times measured in Chromium (never asserted): from a click to the painted page, and from
the first DOM change of an update to its paint. ``benchmarks/bench_widgets.py --browser`` relays them.
"""

from __future__ import annotations

import re
import statistics
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import cell, open_notebook, run_cell, screenshot, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

RUNS, LIVE = 10_000, 50
CELLS = [
    "from connector_nb import ConnectorRegistry, Session\n"
    "from connector_nb.testing import FakeConnector, fast_policy\n"
    "from connector_nb.ui import Dashboard\n"
    "fast, forever = FakeConnector(script=['SUCCEEDED']), FakeConnector('forever', script=['RUNNING'])\n"
    "session = Session(registry=ConnectorRegistry([fast, forever]), poll=fast_policy(max_interval=1.0),\n"
    f"                  journal=False, retain={RUNS})\n"
    f"done = session.launch_many('fake', [{{}} for _ in range({RUNS - LIVE})])\n"
    "for run in done:\n"
    "    run.wait(timeout=300)\n"
    f"live = session.launch_many('forever', [{{}} for _ in range({LIVE})])\n"
    "Dashboard(session)",
]
# Click a control, then wait until the page label and the first and last rows all changed, and two frames
# were painted. Returns [click -> painted, first DOM change -> painted] in milliseconds.
TIMED_CLICK = """
async ([board, selector]) => {
  const root = document.querySelector(board);
  const label = () => root.querySelector('.cnb-page-label')?.textContent;
  const ids = () => [...root.querySelectorAll('.cnb-run-row')].map(r => r.dataset.runId);
  const before = [label(), ids()];
  let first = null;
  const t0 = performance.now();
  const changed = new Promise(resolve => {
    const check = () => {
      if (first === null) first = performance.now();
      const now = ids();
      if (label() !== before[0] && now.length && now[0] !== before[1][0]
          && now[now.length - 1] !== before[1][before[1].length - 1]) { observer.disconnect(); resolve(); }
    };
    const observer = new MutationObserver(check);
    observer.observe(root, {subtree: true, childList: true, characterData: true, attributes: true});
  });
  root.querySelector(selector).click();
  await changed;
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const end = performance.now();
  return [end - t0, end - first];
}
"""

# Waits for ``n`` live updates of the rows (durations tick while runs are live); for each, the time from
# the DOM change to two painted frames, in milliseconds.
LIVE_UPDATES = """
async ([board, n]) => {
  const rows = document.querySelector(board + ' .cnb-rows');
  const times = [];
  for (let i = 0; i < n; i++) {
    await new Promise(resolve => {
      const observer = new MutationObserver(() => { observer.disconnect(); resolve(); });
      observer.observe(rows, {subtree: true, childList: true, characterData: true});
    });
    const t = performance.now();
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    times.push(performance.now() - t);
  }
  return times;
}
"""


def dashboard(page: Any) -> Any:
    return cell(page, 0).locator(".jp-OutputArea-output .cnb-dashboard").first


def label(page: Any) -> Any:
    return dashboard(page).locator(".cnb-page-label")


def test_dashboard_with_10000_runs(lab_server, browser_page):
    page = browser_page
    open_notebook(page, lab_server, write_notebook(lab_server.root_dir, "dashboard_10k", CELLS))
    run_cell(page, 0, timeout_ms=400_000)
    board = dashboard(page)
    expect(board.locator("span.cnb-counts")).to_have_text(re.compile(rf"SUCCEEDED\s{RUNS - LIVE}"))
    expect(board.locator(".cnb-counts").first).to_contain_text(f"{RUNS} runs")
    expect(label(page)).to_have_text(f"1–50 of {RUNS:,} · page 1 of {RUNS // 50:,}")
    rows = board.locator(".cnb-run-row")
    expect(rows).to_have_count(50)  # only the visible page is in the browser
    table = board.locator(".cnb-runs")
    height, scroll = table.evaluate("el => [el.clientHeight, el.scrollHeight]")
    assert height <= 400 < scroll, (height, scroll)  # a fixed-height scrolling table
    expect(board.locator("svg.cnb-chart")).to_be_visible()

    check_paging(page)
    check_filter_search_and_row_cancel(page)
    print_render_times(page)
    screenshot(page, "dashboard_10k")


def check_paging(page: Any) -> None:
    board = dashboard(page)
    newest = board.locator(".cnb-run-row").first.get_attribute("data-run-id")
    assert newest and newest.startswith("forever-")  # newest first
    board.locator("button.cnb-next").click()
    expect(label(page)).to_have_text(re.compile(r"^51–100 of 10,000"))
    expect(board.locator(".cnb-run-row").first).to_have_attribute("data-run-id", re.compile(r"^fake-"))
    board.locator("button.cnb-prev").click()
    expect(board.locator(".cnb-run-row").first).to_have_attribute("data-run-id", newest)


def check_filter_search_and_row_cancel(page: Any) -> None:
    board = dashboard(page)
    board.locator(".cnb-filter select").select_option("RUNNING")
    expect(label(page)).to_have_text(f"1–{LIVE} of {LIVE} · page 1 of 1")
    target = board.locator(".cnb-run-row").nth(7).get_attribute("data-run-id")
    assert target
    board.locator(".cnb-filter select").select_option("all")
    search = board.locator(".cnb-search input")
    search.fill(target[-8:].upper())
    search.press("Enter")
    expect(label(page)).to_have_text("1–1 of 1 · page 1 of 1")
    row = board.locator(f".cnb-run-row[data-run-id='{target}']")
    expect(row).to_have_count(1)
    board.locator(f"button.cnb-row-cancel[title='cancel {target}']").click()
    expect(row.locator(".cnb-phase-badge")).to_have_attribute("data-phase", "ABORTED")
    expect(board.locator(f"button.cnb-row-cancel[title='cancel {target}']")).to_be_disabled()
    expect(board.locator("span.cnb-counts")).to_have_text(re.compile(r"ABORTED\s1(\s|$)"))
    search.fill("")
    search.press("Enter")
    expect(label(page)).to_have_text(re.compile(r"^1–50 of 10,000"))


def print_render_times(page: Any, flips: int = 10) -> None:
    board = ".jp-NotebookPanel:not(.lm-mod-hidden) .cnb-dashboard"
    round_trip, render = [], []
    for i in range(flips):
        selector = "button.cnb-next" if i % 2 == 0 else "button.cnb-prev"
        total, painted = page.evaluate(TIMED_CLICK, [board, selector])
        round_trip.append(total)
        render.append(painted)
    print(f"\n  dashboard ({RUNS:,} runs), page flip, click -> painted: median {statistics.median(round_trip):.0f} ms, "
          f"max {max(round_trip):.0f} ms (includes the kernel round trip)")
    print(f"  dashboard ({RUNS:,} runs), page flip, first DOM change -> painted: "
          f"median {statistics.median(render):.0f} ms, max {max(render):.0f} ms")
    live = page.evaluate(LIVE_UPDATES, [board, 5])
    print(f"  dashboard ({RUNS:,} runs), live throttled update, rows changed -> painted: "
          f"median {statistics.median(live):.0f} ms, max {max(live):.0f} ms")
