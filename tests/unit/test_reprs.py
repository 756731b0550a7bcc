"""Text and HTML reprs (no widget frontend): what GitHub, nbviewer and a saved notebook show."""

from __future__ import annotations

import pytest

from connector_nb import ConnectorRegistry, Session
from connector_nb.logs import Logs
from connector_nb.secrets import MASK, redact
from connector_nb.testing import FakeConnector, fast_policy, wait_until
from connector_nb.ui import display, reprs


@pytest.fixture
def session(tmp_path):
    fake = FakeConnector(script=["RUNNING", "SUCCEEDED"], outputs={"answer": 42})
    secret = FakeConnector("secretive", input_types={"api_token": str, "name": str})
    failing = FakeConnector("failing", script=[RuntimeError("kaboom")])
    session = Session(registry=ConnectorRegistry([fake, secret, failing]), poll=fast_policy(max_get_errors=1),
                      output_dir=str(tmp_path))
    yield session
    session.close(cancel_running=True)


def test_run_text_and_html_show_id_phase_and_message(session):
    run = session.launch("fake")
    run.wait(timeout=10)
    bundle = display.run_mimebundle(run)
    text, page = bundle["text/plain"], bundle["text/html"]
    assert run.run_id in text and "SUCCEEDED" in text and "fake" in text and run.message in text
    assert run.run_id in page and "data-phase='SUCCEEDED'" in page and "class='cnb-timeline'" in page
    for phase in ("QUEUED", "RUNNING", "SUCCEEDED"):
        assert phase in page
    assert "answer" in page and "42" in page


def test_mimebundle_without_a_kernel_has_no_widget_view(session):
    run = session.launch("fake")
    assert not display.widgets_available()  # pytest is not a kernel
    assert set(display.run_mimebundle(run)) == {"text/plain", "text/html"}
    assert set(display.session_mimebundle(session)) == {"text/plain", "text/html"}
    assert set(display.run_mimebundle(run, include=["text/plain"])) == {"text/plain"}


def test_session_text_and_html_show_counts(session):
    runs = session.launch_many("fake", [{}, {}])
    for run in runs:
        run.wait(timeout=10)
    bundle = display.session_mimebundle(session)
    assert "2 runs" in bundle["text/plain"] and "SUCCEEDED=2" in bundle["text/plain"]
    assert runs[0].run_id in bundle["text/plain"]
    assert "class='cnb-counts'" in bundle["text/html"] and "SUCCEEDED</span>&nbsp;2" in bundle["text/html"]
    assert runs[1].run_id in bundle["text/html"]


def test_secret_inputs_are_masked(session):
    run = session.launch("secretive", api_token="s3cr3t-value", name="visible")
    page, text = reprs.run_html(run), reprs.run_text(run)
    assert "s3cr3t-value" not in page and "s3cr3t-value" not in text
    assert MASK in page and "visible" in page
    assert redact({"password": "x", "db_key": "y", "n": 1}) == {"password": "••••", "db_key": "••••", "n": 1}


def test_connector_error_shows_a_traceback(session):
    run = session.launch("failing")
    wait_until(lambda: run.done, what="polling stopped")
    page = reprs.run_html(run)
    assert "cnb-error" in page and "kaboom" in page and "Traceback" in page
    assert "kaboom" in reprs.run_text(run)


def test_logs_text_and_html():
    logs = Logs(["first line", "second <line>"])
    assert "2 lines" in repr(logs) and "second <line>" in repr(logs)
    assert "second &lt;line&gt;" in logs._repr_html_()
    assert "class='cnb-logs'" in reprs.logs_html(logs.lines)


def test_duration_and_badge():
    assert reprs.duration(0.5) == "0.50s" and reprs.duration(75) == "1m15s" and reprs.duration(7322) == "2h02m"
    assert reprs.badge("RUNNING").startswith("<span class='cnb-phase-badge' data-phase='RUNNING'")


def test_ipython_formatter_uses_the_mimebundle(session, monkeypatch):
    from IPython.core.formatters import format_display_data

    from connector_nb import Run

    # The one-liners the lead adds to session.py; patched here so this test does not depend on them.
    monkeypatch.setattr(Run, "_repr_mimebundle_", lambda self, include=None, exclude=None:
                        display.run_mimebundle(self, include, exclude), raising=False)
    monkeypatch.setattr(Session, "_repr_mimebundle_", lambda self, include=None, exclude=None:
                        display.session_mimebundle(self, include, exclude), raising=False)
    run = session.launch("fake")
    run.wait(timeout=10)
    data, _ = format_display_data(run)
    assert data["text/plain"].startswith(f"Run {run.run_id} [fake v0] SUCCEEDED")
    assert "cnb-phase-badge" in data["text/html"] and display.WIDGET_MIME not in data
    data, _ = format_display_data(session)
    assert "SUCCEEDED=1" in data["text/plain"] and "cnb-counts" in data["text/html"]


def test_tracebacks_and_local_log_links_carry_no_machine_paths(tmp_path):
    import site

    from flyteidl.core import execution_pb2

    from connector_nb.ui.reprs import links_html, short_paths

    site_dir = site.getsitepackages()[0]
    text = short_paths(f'File "{site_dir}/pkg/mod.py", line 1\nFile "{tmp_path}/x.py"')
    assert site_dir not in text and str(tmp_path) not in text and "<site-packages>/pkg/mod.py" in text
    html = links_html([execution_pb2.TaskLog(name="sleep log", uri=f"file://{tmp_path}/job.log"),
                       execution_pb2.TaskLog(name="console", uri="https://example.test/job")])
    assert str(tmp_path) not in html and "sleep log" in html
    assert "href='https://example.test/job'" in html and "target='_blank'" in html
