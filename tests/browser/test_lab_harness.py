"""Smoke tests of the browser harness itself: settings, kernel interpreter and live ipywidgets rendering.

They use a plain ``ipywidgets.HTML`` so a failure here points at the environment (JupyterLab, the widget
manager, Chromium), not at connector_nb's widgets.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .conftest import cell, open_notebook, run_cell, screenshot, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

LIVE_BADGE = '''\
import os, threading
import ipywidgets as w
from connector_nb.testing import wait_until

def span(phase):
    return f"<span class='cnb-phase-badge' data-phase='{phase}'>{phase}</span>"

badge = w.HTML(value=span("QUEUED"))

def advance():
    # Updates come from a thread after the cell finished: the browser must render them unprompted.
    # Each step waits for the test's go-ahead file, so the test sees every state (no fixed delays).
    for phase in ("RUNNING", "SUCCEEDED"):
        wait_until(lambda: os.path.exists("go-" + phase), timeout=240, interval=0.02, what="go-" + phase)
        badge.value = span(phase)

threading.Thread(target=advance, daemon=True).start()
badge
'''


def test_lab_settings_overrides_apply(lab_server):
    tracker = lab_server.api("lab/api/settings/@jupyterlab/notebook-extension:tracker")
    notification = lab_server.api("lab/api/settings/@jupyterlab/apputils-extension:notification")
    assert tracker["settings"]["windowingMode"] == "none"
    assert notification["settings"]["fetchNews"] == "false"
    assert notification["settings"]["checkForUpdates"] is False


def test_python3_kernelspec_is_the_default(lab_server):
    specs = lab_server.api("api/kernelspecs")
    assert specs["default"] == "python3"
    # jupyter_client runs a bare "python" argv with the server's interpreter, i.e. this virtualenv's.
    assert specs["kernelspecs"]["python3"]["spec"]["argv"][0] in {"python", "python3", sys.executable}


def test_live_widget_updates_render_without_running_a_cell(lab_server, browser_page):
    page = browser_page
    name = write_notebook(lab_server.root_dir, "harness", ["import sys; print(sys.prefix)", LIVE_BADGE])
    open_notebook(page, lab_server, name)

    out = run_cell(page, 0).locator(".jp-OutputArea-output")
    expect(out).to_have_text(sys.prefix, use_inner_text=True)  # the kernel runs in this virtualenv

    run_cell(page, 1)
    badge = cell(page, 1).locator(".jp-OutputArea-output .widget-html .cnb-phase-badge")
    for before, phase in (("QUEUED", "RUNNING"), ("RUNNING", "SUCCEEDED")):
        expect(badge).to_have_attribute("data-phase", before)
        (Path(lab_server.root_dir) / f"go-{phase}").touch()  # the kernel's thread moves on; no cell runs
        expect(badge).to_have_attribute("data-phase", phase)
    expect(badge).to_have_text("SUCCEEDED")

    # The settings reached the frontend: 4.6's default windowing ("contentVisibility") and the news toast are off.
    expect(page.locator(".jp-content-visibility-mode")).to_have_count(0)
    expect(page.locator(".Toastify__toast")).to_have_count(0)
    screenshot(page, "harness")
