"""Fixtures that drive a real JupyterLab server in Debian's Chromium through Playwright.

``lab_server`` starts ``jupyter lab`` (this virtualenv's python) on a free 127.0.0.1 port with a random token and
isolated config/data/runtime/settings/workspace directories; ``browser_page`` gives a fresh Chromium page.
``open_notebook`` / ``run_cell`` / ``wait_kernel_idle`` drive a notebook like a user would.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from connector_nb.testing import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("CNB_CHROMIUM", "/usr/bin/chromium")
# Root in a container, no network and no GPU: keep Chromium from phoning home or needing a sandbox.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
# windowingMode "none" keeps every cell attached to the DOM, so locators see cells outside the viewport.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}
PR_SET_PDEATHSIG = 1
START_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0
UI_TIMEOUT_MS = 60_000
expect.set_options(timeout=UI_TIMEOUT_MS)  # kernels and widgets are slow on busy CI machines
STARTED = re.compile(r"\[(\*|\d+)\]")
EXECUTED = re.compile(r"\[\d+\]")
KERNEL_IDLE = re.compile(r"^(?!No Kernel).+ \| Idle$")


@dataclass
class LabServer:
    port: int
    token: str
    root_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path.lstrip('/')}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(self.url(path), method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        # Tests share the server: each one starts with no kernel left running by the previous one.
        for session in self.api("api/sessions"):
            self.api(f"api/sessions/{session['id']}", method="DELETE")
        for kernel in self.api("api/kernels"):
            self.api(f"api/kernels/{kernel['id']}", method="DELETE")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_settings(settings_dir: Path) -> None:
    for plugin, values in LAB_SETTINGS.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _lab_env(base: Path) -> dict[str, str]:
    # Isolate every per-user Jupyter/IPython directory; kernelspecs and labextensions still come from sys.prefix.
    env = dict(os.environ)
    for var, sub in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                     ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")]:
        (base / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(base / sub)
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_CONFIG_PATH", None)
    # The kernelspec's argv is "python": make sure it resolves to this virtualenv's interpreter.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _lab_command(port: int, token: str, root: Path, base: Path) -> list[str]:
    # CI containers run as root; the extension manager stays read-only so nothing queries PyPI.
    root_flag = ["--allow-root"] if os.geteuid() == 0 else []
    return [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", *root_flag,
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={base / 'settings'}", f"--LabApp.workspaces_dir={base / 'workspaces'}",
        "--KernelSpecManager.ensure_native_kernel=True", "--ServerApp.terminals_enabled=False",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
    ]


def _die_with_parent() -> None:
    # If pytest itself is killed (e.g. a CI job timeout), Linux sends SIGTERM to the server, which then shuts
    # its kernels down; kernels also exit on their own when their parent dies (JPY_PARENT_PID).
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_ready(server: LabServer) -> None:
    def answers() -> bool:
        if server.proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            server.api("api/status")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False
        return True

    try:
        wait_until(answers, timeout=START_TIMEOUT, interval=0.25, what="jupyter lab to answer /api/status")
    except AssertionError as timed_out:
        raise TimeoutError(f"{timed_out}:\n{server.log_tail()}") from None


def _stop(server: LabServer) -> None:
    # Kernels run in their own sessions: remember every descendant so none outlives the server.
    try:
        family = psutil.Process(server.proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    try:
        server.api("api/shutdown", method="POST")  # graceful: the server shuts its kernels down first
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=STOP_TIMEOUT)
    _, alive = psutil.wait_procs(family, timeout=5)
    for proc in alive:
        proc.kill()


@pytest.fixture(scope="package")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    base = tmp_path_factory.mktemp("jupyter")
    root = tmp_path_factory.mktemp("lab_root")
    _write_settings(base / "settings")
    # connector_nb's log-link extension: its installed config may be missing from an editable install
    server_config = base / "config" / "jupyter_server_config.d"
    server_config.mkdir(parents=True, exist_ok=True)
    (server_config / "connector_nb.json").write_text((REPO_ROOT / "jupyter-config" / "connector_nb.json").read_text())
    port, token = _free_port(), secrets.token_hex(16)
    log_path = base / "jupyter-lab.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            _lab_command(port, token, root, base), cwd=root, env=_lab_env(base),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    server = LabServer(port=port, token=token, root_dir=root, log_path=log_path, proc=proc)
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(server)


# Package scope, not session: Playwright's sync API keeps an asyncio loop running in the main thread
# while it is open, and the rest of the suite (asyncio.run, pytest-asyncio) must not see it.
@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Lets browser_page know at teardown whether the test body failed.
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


@pytest.fixture
def browser_page(request: pytest.FixtureRequest, chromium: Any, lab_server: LabServer) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        if request.node.stash.get(_FAILED, False):
            with contextlib.suppress(PlaywrightError):  # never hide the real failure
                screenshot(page, f"FAILED-{request.node.name}")
        context.close()
        lab_server.shutdown_kernels()


def write_notebook(root: Path, name: str, cells: list[str]) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    # A kernelspec in the metadata makes JupyterLab start python3 without a kernel picker dialog.
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path = root / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path.name


def cell(page: Any, index: int) -> Any:
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").nth(index)


def wait_kernel_idle(page: Any, timeout_ms: int = UI_TIMEOUT_MS) -> None:
    # The toolbar indicator says "idle" before any kernel is attached; the status bar names the kernel once
    # its websocket is connected, so "<kernel> | Idle" there means cells can really be executed.
    status = page.locator("#jp-main-statusbar .jp-StatusBar-TextItem", has_text=KERNEL_IDLE)
    status.wait_for(timeout=timeout_ms)
    indicator = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator")
    indicator.and_(page.locator("[data-status='idle']")).wait_for(timeout=timeout_ms)


def open_notebook(page: Any, server: LabServer, name: str) -> None:
    # "reset" starts from an empty workspace, so tabs of earlier tests are not restored.
    page.goto(server.url(f"lab/tree/{name}?reset"))
    cell(page, 0).wait_for()
    wait_kernel_idle(page)


def run_cell(page: Any, index: int, timeout_ms: int = UI_TIMEOUT_MS) -> Any:
    """Run one cell with Shift+Enter, as a user would, and wait until its execution count is shown."""
    target = cell(page, index)
    prompt = target.locator(".jp-InputArea-prompt")
    for _attempt in range(3):
        target.locator(".jp-InputArea-editor").click()
        expect(target).to_have_class(re.compile(r"\bjp-mod-active\b"))
        page.keyboard.press("Shift+Enter")
        # JupyterLab shows [*] as soon as it sends the request; a key press lost to a focus change leaves
        # "[ ]", and only then is pressing again safe (the cell cannot run twice).
        with contextlib.suppress(PlaywrightTimeoutError):
            prompt.filter(has_text=STARTED).wait_for(timeout=5_000)
            break
    prompt.filter(has_text=EXECUTED).wait_for(timeout=timeout_ms)
    return target


def screenshot(page: Any, name: str) -> Path:
    """A full-page screenshot with the whole notebook in it, under test-artifacts/browser/."""
    fit_notebook(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def fit_notebook(page: Any, max_height: int = 8000) -> None:
    # JupyterLab scrolls inside a fixed-height panel, so full_page alone would cut cells off: grow the viewport
    # by the notebook's hidden height and scroll it back to the top.
    scroller = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer")
    if scroller.count() != 1:
        return
    hidden = scroller.evaluate("el => el.scrollHeight - el.clientHeight")
    size = page.viewport_size or {"width": 1400, "height": 1000}
    if hidden > 0:
        page.set_viewport_size({"width": size["width"], "height": min(size["height"] + hidden + 40, max_height)})
    scroller.evaluate("el => { el.scrollTop = 0; }")
