"""The connector-nb command: list connectors, run a task and follow it, a live demo, serve over gRPC."""

from __future__ import annotations

import argparse
import inspect
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, NoReturn, Sequence, TextIO

from ._args import parse_assignments, parse_json_object
from ._follow import follow
from .errors import ConnectorNbError

if TYPE_CHECKING:
    from .connector import AsyncConnector
    from .session import Run, Session

#: Exit code per final phase (2 is kept for usage errors, as argparse does).
EXIT_CODES = {"SUCCEEDED": 0, "FAILED": 1, "RETRYABLE_FAILED": 3, "ABORTED": 4}
POLLING_STOPPED = 5
USAGE_ERROR = 2
#: Options of `run` that take a value (to find TASK in `run ... TASK --help` before argparse runs).
_RUN_VALUE_OPTIONS = frozenset({"--target", "-t", "--version", "--custom", "--timeout"})


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (and exit code 2), never a usage block."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message`` on one line and exit with code 2."""
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser(_help_task(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return USAGE_ERROR
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ConnectorNbError, ValueError, TypeError, OSError, LookupError) as e:
        return _fail("connector-nb", e)
    except Exception as e:  # never a traceback on the terminal: one line naming the error type
        return _fail("connector-nb", e, unexpected=True)


def _fail(prog: str, error: BaseException, unexpected: bool = False) -> int:
    text = " ".join(str(error).split()) or type(error).__name__
    if unexpected or not isinstance(error, (ConnectorNbError, ValueError, TypeError)):
        text = f"{type(error).__name__}: {text}"
    print(f"{prog}: error: {text}", file=sys.stderr)
    return USAGE_ERROR


def _version() -> str:
    from . import __version__

    return f"connector-nb {__version__}"


def _parser(help_task: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="connector-nb", description=__doc__)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(title="commands", parser_class=_Parser)
    p = sub.add_parser("list", help="connectors offered by the target", description="List the connectors offered.")
    p.add_argument("--verbose", "-v", action="store_true", help="show each task's inputs, types and defaults")
    _target(p).set_defaults(func=cmd_list)
    p = sub.add_parser("run", help="launch a task and wait for it",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Launch a task and wait for it. `connector-nb run TASK --help` lists its inputs.",
                       epilog=_inputs_help(help_task) if help_task else None)
    p.add_argument("task", help="task type, e.g. sleep")
    p.add_argument("inputs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="inputs, read by their declared type (JSON for numbers, booleans and collections)")
    p.add_argument("--version", type=int, default=0, help="task type version (default 0)")
    p.add_argument("--custom", help="custom config as a JSON object")
    p.add_argument("--follow", "-f", action="store_true", help="print transitions and logs as they happen")
    p.add_argument("--timeout", type=float, help="cancel the run after this many seconds")
    _target(p).set_defaults(func=cmd_run)
    p = sub.add_parser("demo", help="several example tasks at once, with a live table",
                       description="Run several example tasks at once, with a live table.")
    p.add_argument("--count", type=int, default=6, help="number of sleep runs besides the shell and SQL ones")
    p.set_defaults(func=cmd_demo)
    from .cli_toolkit import add_commands

    add_commands(sub)
    add_serve_parser(sub)
    return parser


def _target(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--target", "-t", help="grpc://host:port of a connector service (default: in-process)")
    return p


def _help_task(argv: Sequence[str]) -> str | None:
    """TASK of ``run ... TASK ... --help``, so that the help can list its inputs."""
    if not argv or argv[0] != "run" or not {"-h", "--help"} & set(argv):
        return None
    skip = False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg in _RUN_VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _inputs_help(task: str) -> str:
    """The inputs section of ``run TASK --help`` (in-process connectors)."""
    try:
        connector = _local_connector(task, 0)
    except ConnectorNbError as e:
        return f"inputs of {task!r}: unknown ({e})"
    return f"inputs of {task!r}:\n" + ("\n".join(_input_lines(connector)) or "  (none)")


def _local_connector(task: str, version: int) -> AsyncConnector[Any]:
    from .registry import ConnectorRegistry

    connector: AsyncConnector[Any] = ConnectorRegistry.default().get_connector(task, version)
    return connector


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _input_lines(connector: AsyncConnector[Any], indent: str = "  ") -> list[str]:
    """``name: type = default`` (or ``(required)``) for each declared input."""
    defaults = connector.input_defaults
    return [f"{indent}{name}: {_type_name(tp)}" + (f" = {defaults[name]!r}" if name in defaults else " (required)")
            for name, tp in connector.input_types.items()]


def _check_target(args: argparse.Namespace) -> None:
    """A malformed ``--target`` is a one-line error before anything starts."""
    target = getattr(args, "target", None)
    if target is not None:
        from .transports.grpc import parse_target

        parse_target(target)


def _session(args: argparse.Namespace) -> Session:
    from .session import Session

    _check_target(args)
    return Session(getattr(args, "target", None))


def cmd_list(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """``connector-nb list [-v]``: one row per connector (with -v, its inputs under it)."""
    with _session(args) as session:
        infos = session.connectors()
    rows = [(c.task_type, str(c.version), c.name, "sync" if c.is_sync else "async") for c in infos]
    _table(("TASK TYPE", "VERSION", "NAME", "KIND"), rows, out)
    if getattr(args, "verbose", False):
        for c in infos:
            print(f"\n{c.task_type} (v{c.version}) inputs:", file=out)
            print("\n".join(_remote_or_local_inputs(args, c.task_type, c.version)) or "  (none)", file=out)
    return 0


def _remote_or_local_inputs(args: argparse.Namespace, task: str, version: int) -> list[str]:
    if getattr(args, "target", None):
        return ["  (declared by the service; see its documentation)"]
    return _input_lines(_local_connector(task, version))


def _input_types(args: argparse.Namespace) -> dict[str, Any] | None:
    """Declared input types of the task, in-process; None for a remote target (the service checks them)."""
    if getattr(args, "target", None):
        return None
    return dict(_local_connector(args.task, args.version).input_types)


def _assignments(items: Sequence[str], types: dict[str, Any] | None) -> dict[str, Any]:
    """``parse_assignments`` with the declared types where that function reads them (``types=``)."""
    if types is not None and "types" in inspect.signature(parse_assignments).parameters:
        return parse_assignments(items, types=types)  # type: ignore[call-arg,unused-ignore]
    return parse_assignments(items)


def cmd_run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """``connector-nb run TASK KEY=VALUE...``: launch, wait (or --follow), exit code by final phase."""
    from .polling import PollPolicy

    _check_target(args)
    inputs = _assignments(args.inputs, _input_types(args))
    custom = parse_json_object(args.custom, "--custom")
    with _session(args) as session:
        poll = PollPolicy(timeout=args.timeout) if args.timeout else None
        run = session.launch(args.task, inputs, version=args.version, custom=custom, poll=poll)
        print(f"launched {run.run_id}", file=out, flush=True)
        try:
            follow(run, out) if args.follow else _wait_quietly(run)
        except KeyboardInterrupt:
            print(f"interrupted: cancelling {run.run_id}", file=out)
            run.cancel()
        return _report(run, out)


def _wait_quietly(run: Run) -> None:
    while not run.done:
        time.sleep(0.05)






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
    """``connector-nb demo``: several example tasks at once, with a live table."""
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


# -- connector-nb serve ----------------------------------------------------------------------------


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand (its ``func`` default is :func:`run_serve`)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="serve connectors over gRPC as a Flyte connector service",
        description="Serve connectors as a Flyte connector service: those of --modules and of installed "
                    "packages (entry points); the built-in examples only with --examples, shell only with "
                    "--allow-shell. A host other than loopback needs --tls-cert/--tls-key and --auth-token-env.",
    )
    parser.add_argument("--port", type=int, default=8000, help="port to listen on; 0 picks a free one (default 8000)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--modules", nargs="*", default=[], metavar="MODULE",
                        help="modules (or .py files) whose connectors to register")
    parser.add_argument("--examples", action="store_true", help="also serve the built-in examples (not shell)")
    parser.add_argument("--allow-shell", action="store_true", help="serve the shell connector: runs any command")
    parser.add_argument("--tls-cert", "--certificate", dest="certificate", help="PEM certificate file, to serve TLS")
    parser.add_argument("--tls-key", "--private-key", dest="private_key", help="PEM private key file, to serve TLS")
    parser.add_argument("--auth-token-env", metavar="VAR",
                        help="environment variable holding the token callers send as 'authorization: Bearer <token>'")
    parser.add_argument("--max-workers", type=int, default=32, help="threads for blocking connector methods")
    parser.add_argument("--call-timeout", type=float, default=60.0, help="seconds one connector call may take")
    parser.set_defaults(func=run_serve)
    return parser


def _auth_token(variable: str | None) -> str | None:
    if variable is None:
        return None
    token = os.environ.get(variable)
    if not token:
        raise ValueError(f"--auth-token-env: environment variable {variable!r} is not set or empty")
    return token


def run_serve(args: argparse.Namespace) -> int:
    """Run the service until SIGINT/SIGTERM; prints the listening address. Errors: one line, exit code 2."""
    from .server import ServeLimits, serve

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # handled below: stop gracefully

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminate) if main_thread else None
    try:
        try:
            handle = serve(
                port=args.port, host=args.host, modules=args.modules or (), examples=args.examples,
                allow_shell=args.allow_shell, certificate=args.certificate, private_key=args.private_key,
                auth_token=_auth_token(args.auth_token_env), max_workers=args.max_workers, block=False,
                limits=ServeLimits(call_timeout=args.call_timeout),
            )
        except Exception as e:  # a module that does not import, a refused host, a port in use: one line
            return _fail("connector-nb serve", e, unexpected=isinstance(e, (ImportError, SyntaxError)))
        try:  # from the first line on: a SIGTERM right after it must still stop gracefully
            print(f"connector service listening on {handle.target}", flush=True)
            print(f"connectors: {', '.join(handle.connectors) or 'none'}", flush=True)
            handle.wait()
        except KeyboardInterrupt:
            print("stopping", flush=True)
        finally:
            handle.stop(grace=1.0)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
