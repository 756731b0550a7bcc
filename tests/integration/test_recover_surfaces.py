"""What a dead process left behind, seen and taken over from the magics and the dashboard.

A real process launches a run and SIGKILLs itself; this one lists the orphan with ``%connector recover``,
reattaches it with ``%connector reattach``, and cancels another from the dashboard's "From earlier sessions".
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from IPython.core.interactiveshell import InteractiveShell
from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

from connector_nb import Session
from connector_nb.magics import SESSION_NAME
from connector_nb.testing import fast_policy, wait_until

CRASH = ("import os, signal; from connector_nb import Session; s = Session(); "
         "print(*(s.launch('sleep', seconds=60).run_id for _ in range(2)), flush=True); "
         "os.kill(os.getpid(), signal.SIGKILL)")


@pytest.fixture
def orphans(tmp_path, monkeypatch):
    monkeypatch.setenv("CONNECTOR_NB_HOME", str(tmp_path / "home"))
    done = subprocess.run([sys.executable, "-c", CRASH], capture_output=True, text=True, timeout=120)
    assert done.returncode < 0  # it really died by signal
    return done.stdout.split()


def test_magics_list_and_reattach_what_a_killed_process_left(orphans, tmp_path):
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "connector_nb")
    session = Session(poll=fast_policy(), output_dir=str(tmp_path))
    shell.user_ns[SESSION_NAME] = session
    try:
        frame = shell.run_line_magic("connector", "recover")
        assert set(frame["run_id"]) == set(orphans) and set(frame["task_type"]) == {"sleep"}
        assert not frame["unknown_outcome"].any()
        run = shell.run_line_magic("connector", f"reattach {orphans[0]}")
        assert run.run_id == orphans[0] and run.live and session.get_run(orphans[0]) is run
        assert shell.run_line_magic("connector", f"reattach {orphans[0]}") is run  # the same Run again
        assert set(shell.run_line_magic("connector", "recover")["run_id"]) == {orphans[1]}
    finally:
        shell.run_line_magic("unload_ext", "connector_nb")
        session.close(cancel_running=True)
        shell.user_ns.pop(SESSION_NAME, None)


def test_dashboard_earlier_sessions_section_cancels_an_orphan(orphans, tmp_path):
    from connector_nb.ui.dashboard import Dashboard

    setup_test_comm()
    session = Session(poll=fast_policy(), output_dir=str(tmp_path))
    try:
        board = Dashboard(session)
        earlier = board.earlier
        assert earlier is not None
        wait_until(lambda: "2 unfinished" in earlier.header.value, timeout=30, what="the journal read")
        row = next(r for r in earlier.rows.children if orphans[0] in r.children[0].value)
        row.children[2].click()  # Cancel: reattach, then delete
        wait_until(lambda: "cancelled" in earlier.status.value, timeout=30, what="the cancel")
        assert session.get_run(orphans[0]).phase == "ABORTED"
        assert "1 unfinished" in earlier.header.value
        board.close()
    finally:
        session.close(cancel_running=True)
        teardown_test_comm()
