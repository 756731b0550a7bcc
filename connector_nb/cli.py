"""The ``connector-nb`` command: list connectors, run a task and follow it, a live demo, serve over gRPC."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any, Sequence, TextIO

from ._args import parse_assignments, parse_json_object
from .errors import ConnectorNbError
from .frames import clock

if TYPE_CHECKING:
    from .session import Run, Session

#: Exit code per final phase (2 is kept for usage errors, as argparse does).
EXIT_CODES = {"SUCCEEDED": 0, "FAILED": 1, "RETRYABLE_FAILED": 3, "ABORTED": 4}
POLLING_STOPPED = 5


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConnectorNbError as e:
        print(f"connector-nb: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="connector-nb", description=__doc__)
    sub = parser.add_subparsers(title="commands")
    p = sub.add_parser("list", help="connectors offered by the target")
    _target(p).set_defaults(func=cmd_list)
    p = sub.add_parser("run", help="launch a task and wait for it")
    p.add_argument("task", help="task type, e.g. sleep")
    p.add_argument("inputs", nargs="*", metavar="KEY=VALUE", help="inputs; values are JSON where they parse")
    p.add_argument("--version", type=int, default=0, help="task type version")
    p.add_argument("--custom", help="custom config as a JSON object")
    p.add_argument("--follow", "-f", action="store_true", help="print transitions and logs as they happen")
    p.add_argument("--timeout", type=float, help="cancel the run after this many seconds")
    _target(p).set_defaults(func=cmd_run)
    p = sub.add_parser("demo", help="several example tasks at once, with a live table")
    p.add_argument("--count", type=int, default=6, help="number of sleep runs besides the shell and SQL ones")
    p.set_defaults(func=cmd_demo)
    from .cli_toolkit import add_commands

    add_commands(sub)
    try:
        from .server import add_serve_parser
    except ImportError:  # the server needs grpc; the rest of the CLI does not
        pass
    else:
        add_serve_parser(sub)
    return parser


def _target(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--target", "-t", help="grpc://host:port of a connector service (default: in-process)")
    return p


def _session(args: argparse.Namespace) -> Session:
    from .session import Session

    return Session(getattr(args, "target", None))


def cmd_list(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    with _session(args) as session:
        rows = [(c.task_type, str(c.version), c.name, "sync" if c.is_sync else "async") for c in session.connectors()]
    _table(("TASK TYPE", "VERSION", "NAME", "KIND"), rows, out)
    return 0


def cmd_run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from .polling import PollPolicy

    inputs = parse_assignments(args.inputs)
    custom = parse_json_object(args.custom, "--custom")
    with _session(args) as session:
        poll = PollPolicy(timeout=args.timeout) if args.timeout else None
        run = session.launch(args.task, inputs, version=args.version, custom=custom, poll=poll)
        print(f"launched {run.run_id}", file=out, flush=True)
        try:
            _follow(run, out) if args.follow else _wait_quietly(run)
        except KeyboardInterrupt:
            print(f"interrupted: cancelling {run.run_id}", file=out)
            run.cancel()
        return _report(run, out)


def _wait_quietly(run: Run) -> None:
    while not run.done:
        time.sleep(0.05)


def _follow(run: Run, out: TextIO) -> None:
    """Print each transition and new log line until the run is done."""
    shown, lines, next_logs = 0, 0, 0.0
    while True:
        done = run.done
        for t in run.transitions[shown:]:
            print(f"{clock(t.at)}  {t.phase:<17} {t.message}", file=out, flush=True)
        shown = len(run.transitions)
        if done or time.monotonic() >= next_logs:
            lines = _print_new_logs(run, lines, out)
            next_logs = time.monotonic() + 0.5
        if done:
            return
        time.sleep(0.05)


def _print_new_logs(run: Run, already: int, out: TextIO) -> int:
    try:
        logs = run.logs()
    except ConnectorNbError:
        return already  # no logs (or not yet): transitions still tell the story
    for line in logs.lines[already:]:
        print(f"    | {line}", file=out, flush=True)
    return len(logs.lines)


def _report(run: Run, out: TextIO) -> int:
    if run.polling_error is not None:
        print(f"{run.run_id}: {run.polling_error}", file=out)
        return POLLING_STOPPED
    outputs = run.outputs
    print(f"{run.run_id}: {run.phase} in {run.elapsed:.2f} s ({run.get_calls} get calls) {run.message}", file=out)
    for name, value in outputs.items():
        print(f"  output {name} = {_short(value)}", file=out)
    return EXIT_CODES.get(run.phase, 1)


def cmd_demo(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    import tempfile

    from .examples import make_demo_database

    db = make_demo_database(tempfile.mkdtemp(prefix="connector-nb-demo-") + "/demo.sqlite3")
    with _session(args) as session:
        runs = [session.launch("sleep", seconds=0.5 + i * 0.5, fail=(i == 2)) for i in range(args.count)]
        runs.append(session.launch("shell", command="for i in 1 2 3 4 5; do echo step $i; sleep 0.3; done"))
        runs.append(session.launch("sqlite_query", database=db,
                                   query="SELECT city, COUNT(*) AS trips, ROUND(AVG(fare), 2) AS avg_fare "
                                         "FROM trips GROUP BY city ORDER BY trips DESC"))
        _live_table(runs, out)
        return 0 if all(r.phase == "SUCCEEDED" for i, r in enumerate(runs) if i != 2) else 1


def _live_table(runs: list[Run], out: TextIO) -> None:
    """Redraw in place on a terminal; elsewhere print the table when something changed."""
    tty = out.isatty()
    last = None
    while True:
        done = all(r.done for r in runs)
        rows = [(r.run_id, r.task_type, r.phase, f"{r.elapsed:5.1f}s", r.message[:50]) for r in runs]
        state = [row[2] for row in rows]
        if tty or state != last or done:
            if tty and last is not None:
                out.write(f"\x1b[{len(rows) + 1}F")
            _table(("RUN", "TASK", "PHASE", "ELAPSED", "MESSAGE"), rows, out, clear=tty)
            last = state
        if done:
            return
        time.sleep(0.1)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO, clear: bool = False) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    eol = "\x1b[K\n" if clear else "\n"
    for row in (header, *rows):
        out.write("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() + eol)
    out.flush()


def _short(value: Any) -> str:
    text = repr(value) if not hasattr(value, "shape") else f"<DataFrame {value.shape[0]} rows x {value.shape[1]} cols>"
    return text if len(text) < 200 else text[:197] + "..."


if __name__ == "__main__":
    sys.exit(main())
