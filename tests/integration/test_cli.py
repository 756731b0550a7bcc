"""The ``connector-nb`` command, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector_nb.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_list():
    out = cli("list")
    assert out.returncode == 0
    assert "sleep" in out.stdout and "sqlite_query" in out.stdout and "shell" in out.stdout


def test_run_follow_prints_transitions_logs_and_exit_code():
    out = cli("run", "sleep", "seconds=0.8", "--follow")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any("RUNNING" in line for line in lines) and any("SUCCEEDED" in line for line in lines)
    assert any("| [t=0.50s] tick 1" in line for line in lines)
    assert "output slept = 0.8" in out.stdout


def test_exit_codes_follow_the_final_phase():
    assert cli("run", "sleep", "seconds=0.2", "fail=true").returncode == 1
    assert cli("run", "sleep", "seconds=30", "--timeout", "0.3").returncode == 4  # ABORTED by the timeout


def test_usage_errors_are_one_line():
    out = cli("run", "nope")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "connector-nb: error: no connector for task type 'nope' version 0; registered: shell (v0), sleep (v0), "
        "sqlite_query (v0)"
    ]
    out = cli("run", "sleep", "seconds")
    assert out.returncode == 2 and "expected key=value" in out.stderr
    out = cli("run", "sleep", "secs=1")
    assert out.returncode == 2 and "no input 'secs'" in out.stderr


def test_demo_runs_several_tasks_and_shows_a_table():
    out = cli("demo", "--count", "3", timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "sqlite_query" in out.stdout and "shell" in out.stdout
    assert out.stdout.count("SUCCEEDED") >= 4 and "FAILED" in out.stdout


def test_list_and_run_against_a_connector_service():
    from connector_nb import ConnectorRegistry, serve
    from connector_nb.examples import CONNECTORS

    with serve(ConnectorRegistry(CONNECTORS), port=0, block=False) as handle:
        listed = cli("list", "--target", handle.target)
        assert listed.returncode == 0, listed.stderr
        assert "sleep" in listed.stdout and "shell" not in listed.stdout  # never served without allow_shell
        ran = cli("run", "sleep", "seconds=0.3", "--follow", "--target", handle.target)
        assert ran.returncode == 0, ran.stderr
        assert "RUNNING" in ran.stdout and "SUCCEEDED" in ran.stdout and "| [t=" in ran.stdout
        failed = cli("run", "sleep", "seconds=0.2", "fail=true", "--target", handle.target)
        assert failed.returncode == 1 and "fail=True" in failed.stdout


def test_unreachable_target_is_one_clear_line():
    out = cli("list", "--target", "grpc://127.0.0.1:9")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "unavailable" in lines[0] and "127.0.0.1:9" in lines[0]
