"""``%connector`` magics in a real InteractiveShell, and a real kernel (nbclient) that keeps polling."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from connector_nb import ConnectorRegistry, Run, Session
from connector_nb.examples import CONNECTORS
from connector_nb.magics import SESSION_NAME
from connector_nb.testing import FakeConnector, fast_policy


@pytest.fixture
def ip(tmp_path):
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "connector_nb")
    session = Session(registry=ConnectorRegistry([FakeConnector("forever", script=["RUNNING"]), *CONNECTORS]),
                      poll=fast_policy(), output_dir=str(tmp_path))
    shell.user_ns[SESSION_NAME] = session
    yield shell
    shell.run_line_magic("unload_ext", "connector_nb")
    session.close(cancel_running=True)
    shell.user_ns.pop(SESSION_NAME, None)


def cell(ip, source):
    result = ip.run_cell(source)
    result.raise_error()
    return result.result


def test_launch_wait_binds_a_succeeded_run(ip):
    cell(ip, "run = %connector launch sleep seconds=0.2 --wait")
    run = ip.user_ns["run"]
    assert isinstance(run, Run) and run.phase == "SUCCEEDED"
    assert run.inputs["seconds"] == 0.2


def test_list_connectors(ip):
    frame = ip.run_line_magic("connector", "list")
    assert {"sleep", "shell", "sqlite_query", "forever"} <= set(frame["task_type"])


def test_cell_launch_with_yaml_and_json(ip):
    run = ip.run_cell_magic("connector", "launch --wait", "task: sleep\ninputs:\n  seconds: 0.1\n")
    assert run.phase == "SUCCEEDED"
    run = ip.run_cell_magic("connector", "launch --wait",
                            '{"task": "shell", "inputs": {"command": "echo from-json"}, "version": 0}')
    assert run.phase == "SUCCEEDED"
    assert "from-json" in ip.run_line_magic("connector", f"logs {run.run_id}")


def test_cancel_by_id_and_variable_and_all(ip, capsys):
    cell(ip, "a = %connector launch forever")
    b = ip.run_line_magic("connector", "launch forever")
    ip.run_line_magic("connector", "cancel a")
    assert ip.user_ns["a"].phase == "ABORTED" and b.phase in ("QUEUED", "RUNNING")
    c = ip.run_line_magic("connector", "launch forever")
    ip.run_line_magic("connector", "cancel --all")
    assert b.phase == c.phase == "ABORTED"
    assert "cancelled 2 run(s)" in capsys.readouterr().out


def test_logs_metrics_runs_status(ip, capsys):
    run = ip.run_line_magic("connector", "launch sleep seconds=0.6 --wait")
    logs = ip.run_line_magic("connector", f"logs {run.run_id}")
    assert "done: slept 0.6 s" in logs and logs.lines
    metrics = ip.run_line_magic("connector", f"metrics {run.run_id}")
    assert list(metrics.columns[:3]) == ["metric", "timestamp", "value"] and "progress" in set(metrics["metric"])
    frame = ip.run_line_magic("connector", "runs")
    assert run.run_id in set(frame["run_id"])
    ip.run_line_magic("connector", f"status {run.run_id}")
    ip.run_line_magic("connector", "status")
    out = capsys.readouterr().out
    assert f"Run {run.run_id} [sleep v0] SUCCEEDED" in out and "SUCCEEDED=1" in out


def test_wait_subcommand_and_step_mode(ip):
    run = ip.run_line_magic("connector", "launch sleep seconds=0.1")
    assert ip.run_line_magic("connector", f"wait {run.run_id}") is run and run.phase == "SUCCEEDED"
    step = ip.run_line_magic("connector", "launch sleep seconds=0 --step")
    assert not step.autopoll and step.get_calls == 0


@pytest.mark.parametrize("line, needle", [
    ("bogus", "unknown subcommand"),
    ("launch", "needs a task type"),
    ("launch sleep 12", "expected key=value (e.g. seconds=2), got '12'"),
    ("launch sleep seconds=abc", "seconds"),
    ("launch nosuch x=1", "no connector for task type 'nosuch'"),
    ("launch sleep seconds=1 extra=2", "no input 'extra'"),
    ("launch sleep seconds=1 --custom [1]", "--custom must be a JSON object"),
    ("status no-such-run", "no run 'no-such-run'"),
    ("cancel", "expected: %connector cancel RUN"),
    ("logs", "expected: %connector logs RUN"),
    ("register NoSuchClass", "no variable 'NoSuchClass'"),
    ("launch --bogus-flag", "unrecognized arguments"),
])
def test_usage_errors_are_one_line(ip, line, needle):
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("connector", line)
    message = str(info.value)
    assert needle in message and "\n" not in message


def test_bad_cell_bodies_are_usage_errors(ip):
    for body, needle in [("task: [unclosed", "not valid YAML"), ("inputs: {}", "'task' key"),
                         ("task: sleep\ninputs: 3", "'inputs' must be a mapping")]:
        with pytest.raises(UsageError) as info:
            ip.run_cell_magic("connector", "launch", body)
        assert needle in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UsageError, match="only '%%connector launch'"):
        ip.run_cell_magic("connector", "runs", "task: sleep")


def test_usage_error_in_a_cell_shows_no_traceback(ip, capsys):
    result = ip.run_cell("%connector launch nosuch")
    assert isinstance(result.error_in_exec, UsageError)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err


def test_register_a_class_from_the_namespace(ip, capsys):
    source = ("from connector_nb.testing import FakeConnector\n"
              "class MyFake(FakeConnector):\n"
              "    def __init__(self):\n"
              "        super().__init__('myfake', script=['RUNNING', 'SUCCEEDED'])\n")
    cell(ip, source)
    ip.run_line_magic("connector", "register MyFake")
    assert "registered MyFake for task type 'myfake' v0" in capsys.readouterr().out
    cell(ip, source)  # the re-run cell: a new class of the same name replaces the old one
    ip.run_line_magic("connector", "register MyFake")
    assert "replaced the previous definition" in capsys.readouterr().out
    run = ip.run_line_magic("connector", "launch myfake --wait")
    assert run.phase == "SUCCEEDED"


def test_default_session_is_created_lazily_and_closed_on_unload(ip):
    ip.user_ns.pop(SESSION_NAME)
    ip.run_line_magic("connector", "list")
    session = ip.user_ns[SESSION_NAME]
    assert isinstance(session, Session) and session.registry is not None
    ip.run_line_magic("unload_ext", "connector_nb")
    assert session.closed and SESSION_NAME not in ip.user_ns
    with pytest.raises(UsageError):
        ip.run_line_magic("connector", "list")
    ip.run_line_magic("load_ext", "connector_nb")


def test_reload_ext_keeps_the_magics_working(ip):
    ip.run_line_magic("reload_ext", "connector_nb")
    assert ip.find_line_magic("connector") is not None and ip.find_cell_magic("connector") is not None
    assert "sleep" in set(ip.run_line_magic("connector", "list")["task_type"])


def test_ui_returns_the_panel_and_dashboard(ip):
    from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

    from connector_nb.ui.dashboard import Dashboard
    from connector_nb.ui.launch_panel import LaunchPanel

    setup_test_comm()
    try:
        ui = ip.run_line_magic("connector", "ui")
        assert [type(c) for c in ui.widget().children] == [LaunchPanel, Dashboard]
        bundle = ui._repr_mimebundle_()  # no kernel here: readable fallbacks only, never a bare widget repr
        assert set(bundle) == {"text/plain", "text/html"}
        assert bundle["text/plain"].startswith("launch panel and dashboard") and "VBox" not in bundle["text/plain"]
    finally:
        teardown_test_comm()


def test_connect_replaces_the_session(ip, capsys):
    from connector_nb.server import serve

    old = ip.user_ns[SESSION_NAME]
    server = serve(ConnectorRegistry(CONNECTORS), port=0, block=False)
    try:
        ip.run_line_magic("connector", f"connect {server.target}")
        new = ip.user_ns[SESSION_NAME]
        assert new is not old and old.closed and new.registry is None
        assert "connected" in capsys.readouterr().out
        run = ip.run_line_magic("connector", "launch sleep seconds=0.1 --wait")
        assert run.phase == "SUCCEEDED"
    finally:
        ip.run_line_magic("unload_ext", "connector_nb")
        ip.run_line_magic("load_ext", "connector_nb")
        server.stop()


# ---------------------------------------------------------------------------------------------- a real kernel

NOTEBOOK_CELLS = [
    "import time\n"
    "from connector_nb import Session\n"
    "session = Session()\n"
    "run = session.launch('sleep', seconds=1.0)\n"
    "run",
    "calls_before = run.get_calls\n"
    "time.sleep(1.5)\n"
    "print('calls during sleep', run.get_calls - calls_before)",
    "assert run.phase == 'SUCCEEDED', run.phase\n"
    "print('phase', run.phase)",
]


@pytest.mark.kernel
def test_kernel_keeps_polling_while_a_cell_blocks():
    from kernel_cells import execute_cells, stream_text

    nb = execute_cells(NOTEBOOK_CELLS, timeout=60)
    shown = next(o for o in nb.cells[0].outputs if o.output_type == "execute_result")
    assert {"text/plain", "text/html", "application/vnd.jupyter.widget-view+json"} <= set(shown.data)
    assert "Run sleep-" in shown.data["text/plain"] and "cnb-phase-badge" in shown.data["text/html"]
    during = stream_text(nb.cells[1])
    assert int(during.split()[-1]) > 0  # get was called while the cell was blocked in time.sleep
    assert "phase SUCCEEDED" in stream_text(nb.cells[2])
