"""``connector-nb check`` and ``connector-nb replay``, run as real subprocesses."""

from __future__ import annotations

import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from connector_nb import Session
from connector_nb.testing import fast_policy

UNIT = Path(__file__).resolve().parent.parent / "unit"  # where flawed_connectors.py lives


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector_nb.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=UNIT)


def test_check_a_good_connector_exits_0_and_writes_junit(tmp_path):
    junit = tmp_path / "check.xml"
    out = cli("check", "flawed_connectors:GoodConnector", "--junit", str(junit))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[0].split()[:5] == ["CHECK", "STATUS", "VIA", "DURATION", "REASON"]
    assert out.stdout.splitlines()[-1] == "good: 12 passed, 0 warnings, 0 failed"
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "12" and suite.get("failures") == "0"


def test_check_a_flawed_connector_through_the_wire_exits_1(tmp_path):
    junit = tmp_path / "check.xml"
    out = cli("check", "flawed_connectors.py:NonIdempotentDelete", "--wire", "--junit", str(junit))
    assert out.returncode == 1, out.stdout + out.stderr
    failures = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase") if c.find("failure") is not None]
    assert failures == ["delete_idempotent[in-process]", "delete_idempotent[grpc]"]


def test_check_a_registered_task_type_with_inputs():
    out = cli("check", "sleep", "seconds=0.2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "phases seen: QUEUED, RUNNING, SUCCEEDED" in out.stdout


def test_check_usage_errors_are_one_line():
    out = cli("check", "no_such_module:Thing")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "connector-nb: error: cannot import 'no_such_module': No module named 'no_such_module'"]
    out = cli("check", "flawed_connectors:Nope")
    assert out.returncode == 2 and "has no 'Nope'" in out.stderr and "Traceback" not in out.stderr
    out = cli("check", "flawed_connectors:GoodConnector", "--target", "grpc://127.0.0.1:1")
    assert out.returncode == 2 and "give the task type name as a str" in out.stderr and "Traceback" not in out.stderr
    out = cli("check", "flawed_connectors:GoodConnector", "--timeout", "-1")
    assert out.returncode == 2 and "timeout: expected a positive" in out.stderr
    out = cli("check", "flawed_connectors:GoodConnector", "--junit", str(UNIT / "no_such_dir" / "x.xml"))
    assert out.returncode == 2 and "--junit: cannot write" in out.stderr and "Traceback" not in out.stderr
    out = cli("replay", "bigquery_query", "--speed", "0")
    assert out.returncode == 2 and "--speed: speed must be a positive number" in out.stderr
    out = cli("replay", "no_such_recording")
    assert out.returncode == 2 and "no recording 'no_such_recording'" in out.stderr


def test_replay_the_shipped_recording():
    out = cli("replay", "bigquery_query", "--speed", "8")
    assert out.returncode == 0, out.stdout + out.stderr
    phases = [line.split()[1] for line in out.stdout.splitlines() if line[:2].isdigit()]
    assert phases == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert "| job done" in out.stdout and "output results = <DataFrame 6 rows x 3 cols>" in out.stdout


def test_replay_with_a_mismatched_input_names_it():
    out = cli("replay", "bigquery_query", "query=SELECT 2")
    assert out.returncode == 2
    assert "create.inputs.query: recorded 'SELECT city" in out.stderr and "now 'SELECT 2'" in out.stderr


def test_replay_serve_answers_over_grpc():
    proc = subprocess.Popen([sys.executable, "-m", "connector_nb.cli", "replay", "bigquery_query", "--serve",
                             "--speed", "8"], stdout=subprocess.PIPE, text=True, cwd=UNIT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("replay service listening on grpc://127.0.0.1:"), line
        target = line.split()[-1]
        from connector_nb.recording import ReplayConnector
        from connector_nb.recordings import BIGQUERY

        inputs = ReplayConnector(BIGQUERY).recorded_inputs()
        with Session(target, poll=fast_policy(), journal=False) as session:
            run = session.launch("bigquery_query_job_task", inputs)
            assert run.wait(timeout=60).phase == "SUCCEEDED"
            assert run.outputs["total_bytes_processed"] == 48213504
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
