"""One secret value through each route, then every output path walked: the value appears nowhere.

Routes: a secret-named input, a declared secret from the environment, a credential inside a URL, a custom field,
and all of them echoed by the connector in its messages, logs, custom info and errors. Paths: repr, HTML, the
mime bundle, widget state (``get_manager_state()``), runs_frame, timeline, logs, errors, journal bytes, CLI
output, the server's log and gRPC status details.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from leaky_connector_module import Leaky

from connector_nb import ConnectorRegistry, Session
from connector_nb.testing import fast_policy, wait_until

HERE = Path(__file__).parent
SECRETS = {
    "input": "s3cr3t-input-4711",
    "declared": "s3cr3t-declared-4712",
    "url": "s3cr3t-urlpass-4713",
    "custom": "s3cr3t-custom-4714",
}


def _launch(session: Session):
    return session.launch("leaky", api_key=SECRETS["input"], conn=f"postgres://u:{SECRETS['url']}@db.test/x", n=1,
                          custom={"token": SECRETS["custom"]})


def _leaks(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if value in text]


def _outputs_in_process(session: Session, run) -> dict[str, str]:
    import ipywidgets as w

    from connector_nb.ui.dashboard import Dashboard
    from connector_nb.ui.run_view import RunView

    out = {"repr": repr(run), "html": run._repr_html_(), "mimebundle": str(run._repr_mimebundle_()),
           "session repr": repr(session), "session html": session._repr_html_(),
           "runs_frame": session.runs_frame().to_string(), "timeline": run.timeline().to_string(),
           "message": run.message, "transitions": str(run.transitions), "resource": str(run.resource),
           "logs": str(run.logs())}
    try:
        run.metrics()
    except Exception as e:
        out["error"] = "".join(traceback.format_exception(e))
    if run.error is not None:
        out["run.error"] = "".join(traceback.format_exception(run.error))
    from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

    setup_test_comm()  # widgets without a frontend, as the widget tests make them
    try:
        view, board = RunView(run), Dashboard(session)
        view.tabs.selected_index = 0
        wait_until(lambda: view.renders > 0 and board.renders > 0, what="the widgets to render")
        out["widget state"] = str(w.Widget.get_manager_state())
        view.close()
        board.close()
    finally:
        teardown_test_comm()
    return out


@pytest.fixture
def declared_secret(monkeypatch):
    monkeypatch.setenv("LEAKY_API_SECRET", SECRETS["declared"])


def test_in_process_every_output_path_masks_every_secret(tmp_path, declared_secret):
    journal = tmp_path / "journal.sqlite3"
    with Session(registry=ConnectorRegistry([Leaky()]), poll=fast_policy(), journal=str(journal),
                 output_dir=str(tmp_path)) as session:
        run = _launch(session)
        run.wait(timeout=30)
        assert run.phase == "FAILED"
        outputs = _outputs_in_process(session, run)
        session.journal.flush()
        journal_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite3*"))
    outputs["journal bytes"] = journal_bytes.decode("latin-1")
    found = {path: _leaks(text) for path, text in outputs.items() if _leaks(text)}
    print(f"secrets walk (in-process): {len(outputs)} paths x {len(SECRETS)} secrets, leaks: {found or 0}")
    assert not found
    assert "job failed" in outputs["message"]  # the message itself is still there, masked


def test_over_grpc_cli_output_server_log_and_status_details_mask_every_secret(tmp_path, declared_secret):
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    server = subprocess.Popen([sys.executable, "-m", "connector_nb.cli", "serve", "--port", "0", "--modules",
                               "leaky_connector_module"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        target = ""
        for line in server.stdout:
            if "listening on" in line:
                target = line.split("listening on", 1)[1].split()[0]
                break
        assert target.startswith("grpc://127.0.0.1:")
        cli = subprocess.run([sys.executable, "-m", "connector_nb.cli", "run", "leaky", f"api_key={SECRETS['input']}",
                              f"conn=postgres://u:{SECRETS['url']}@db.test/x", "n=1", "--custom",
                              f'{{"token": "{SECRETS["custom"]}"}}', "--target", target, "--follow"],
                             capture_output=True, text=True, env=env, timeout=120)
        with Session(target, journal=str(tmp_path / "j.sqlite3")) as remote:
            run = _launch(remote)
            run.wait(timeout=30)
            details = ""
            try:
                run.metrics()
            except Exception as e:
                details = f"{e} {getattr(e, 'grpc_code', '')}"
            seen = {"cli stdout": cli.stdout, "cli stderr": cli.stderr, "grpc details": details,
                    "remote message": run.message, "remote logs": str(run.logs()), "remote repr": run._repr_html_()}
    finally:
        server.terminate()
        log, _ = server.communicate(timeout=30)
    seen["server log"] = log
    found = {path: _leaks(text) for path, text in seen.items() if _leaks(text)}
    print(f"secrets walk (gRPC): {len(seen)} paths x {len(SECRETS)} secrets, leaks: {found or 0}")
    assert "job failed" in seen["cli stdout"] + seen["cli stderr"]
    assert not found
