"""Following a run in a terminal (``connector-nb run --follow``, ``connector-nb replay``): transitions and logs."""

from __future__ import annotations

import time
from typing import Any, TextIO

from .errors import ConnectorNbError
from .frames import clock


def follow(run: Any, out: TextIO) -> None:
    """Print each transition and each new log line until the run is done."""
    shown, lines, next_logs = 0, 0, 0.0
    while True:
        done = run.done
        for t in run.transitions[shown:]:
            print(f"{clock(t.at)}  {t.phase:<17} {t.message}", file=out, flush=True)
        shown = len(run.transitions)
        if done or time.monotonic() >= next_logs:
            lines = print_new_logs(run, lines, out)
            next_logs = time.monotonic() + 0.5
        if done:
            return
        time.sleep(0.05)  # a terminal display's refresh, not a wait for a condition


def print_new_logs(run: Any, already: int, out: TextIO) -> int:
    """Print the log lines after the first ``already``; returns how many there are now."""
    try:
        logs = run.logs()
    except ConnectorNbError:
        return already  # no logs (or not yet): the transitions still tell the story
    for line in logs.lines[already:]:
        print(f"    | {line}", file=out, flush=True)
    return len(logs.lines)
