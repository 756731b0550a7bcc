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


def _one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


def test_bad_targets_are_one_line():
    for target in ("http://x", "grpc://", "a:b:c", "grpc://h:99999"):
        for args in (("list", "--target", target), ("run", "sleep", "seconds=1", "-t", target)):
            line = _one_line_error(cli(*args))
            assert line.startswith("connector-nb: error: bad connector service target") and repr(target) in line


def test_argparse_and_input_errors_are_one_line():
    line = _one_line_error(cli("run"))
    assert line == "connector-nb run: error: the following arguments are required: task (see --help)"
    assert "unrecognized arguments: --bogus" in _one_line_error(cli("list", "--bogus"))
    assert "invalid int value" in _one_line_error(cli("run", "sleep", "--version", "x"))
    assert "--custom must be a JSON object" in _one_line_error(cli("run", "sleep", "seconds=1", "--custom", "[1]"))


def test_version_and_help_text():
    from connector_nb import __version__

    out = cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"connector-nb {__version__}"
    for args in (("--help",), ("run", "--help"), ("serve", "--help"), ("list", "--help")):
        out = cli(*args)
        assert out.returncode == 0 and "``" not in out.stdout, out.stdout
    usage = cli("run", "--help").stdout
    assert "task [KEY=VALUE ...]" in " ".join(usage.split())


def test_list_verbose_and_run_help_show_inputs_with_types_and_defaults():
    out = cli("list", "-v")
    assert out.returncode == 0, out.stderr
    assert "sleep (v0) inputs:\n  seconds: float (required)\n  fail: bool = False" in out.stdout
    assert "shell (v0) inputs:" in out.stdout and "  command: str (required)" in out.stdout
    out = cli("run", "sleep", "--help")
    assert out.returncode == 0
    assert "inputs of 'sleep':\n  seconds: float (required)\n  fail: bool = False" in out.stdout
    out = cli("run", "--target", "grpc://127.0.0.1:9", "sqlite_query", "-h")
    assert out.returncode == 0 and "inputs of 'sqlite_query':" in out.stdout


def test_cli_passes_declared_types_to_the_key_value_parser(monkeypatch):
    import argparse

    from connector_nb import cli as cli_module

    seen: list[object] = []

    def typed(items, types=None):
        seen.append(types)
        return {}

    monkeypatch.setattr(cli_module, "parse_assignments", typed)
    assert cli_module._assignments(["command=true"], {"command": str}) == {}
    assert seen == [{"command": str}]
    args = argparse.Namespace(task="shell", version=0, target=None)
    assert cli_module._input_types(args)["command"] is str
    assert cli_module._input_types(argparse.Namespace(task="shell", version=0, target="grpc://h:1")) is None

    def untyped(items):
        seen.append("untyped")
        return {}

    monkeypatch.setattr(cli_module, "parse_assignments", untyped)
    cli_module._assignments(["command=true"], {"command": str})
    assert seen[-1] == "untyped"


def test_ctrl_c_cancels_the_run():
    import signal
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "connector_nb.cli", "run", "sleep", "seconds=60", "--follow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    running = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "RUNNING" in line:
                running.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert running.wait(60), lines
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 4, (lines, proc.stderr.read())  # ABORTED
        reader.join(10)
        assert any(line.startswith("interrupted: cancelling ") for line in lines)
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
