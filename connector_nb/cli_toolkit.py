"""``connector-nb check`` (the conformance check) and ``connector-nb replay`` (play a recording back).

``cli.py`` wires them in with ``add_commands(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from ._args import parse_assignments, parse_json_object
from ._follow import follow
from .errors import ConnectorNbError, InputError


def add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``check`` and ``replay`` to the ``connector-nb`` command."""
    p = subparsers.add_parser(
        "check", help="judge a connector: launch real runs, one row per check; exit 1 when any check fails",
        description="Launch real runs of a connector and check it against the connector contract.",
    )
    p.add_argument("connector", help="module:Class (or file.py:Class), or a registered task type")
    p.add_argument("inputs", nargs="*", metavar="KEY=VALUE", help="inputs of each test run (keep the job short)")
    p.add_argument("--custom", help="the template's custom field, as a JSON object")
    p.add_argument("--version", type=int, default=0, help="task type version")
    p.add_argument("--target", "-t", help="check a task type on a running service (grpc://host:port)")
    p.add_argument("--wire", action="store_true", help="also serve it on 127.0.0.1 and check through gRPC")
    p.add_argument("--junit", metavar="FILE", help="write the results as JUnit XML")
    p.add_argument("--timeout", type=float, default=60.0, help="longest a test run may take (seconds)")
    p.add_argument("--lag-threshold", type=float, default=None, help="longest a method may block the loop (s)")
    p.set_defaults(func=cmd_check)
    p = subparsers.add_parser("replay", help="play a recording (.cnbrec) back: run it, or serve it over gRPC",
                              description="Replay a recording made with Session(record=...).")
    p.add_argument("file", help="the recording, or the name of a shipped one (e.g. bigquery_query)")
    p.add_argument("inputs", nargs="*", metavar="KEY=VALUE", help="inputs (default: the recorded ones)")
    p.add_argument("--speed", type=float, default=1.0, help="playback speed (2 = twice as fast)")
    p.add_argument("--serve", action="store_true", help="serve it as a connector service instead of running it")
    p.add_argument("--port", type=int, default=0, help="--serve: port on 127.0.0.1 (default: a free one)")
    p.set_defaults(func=cmd_replay)


def load_connector(spec: str) -> Any:
    """``module:Name`` or ``path/file.py:Name`` -> the object; a bare name is returned as a task type."""
    if ":" not in spec:
        return spec
    module_name, _, attr = spec.rpartition(":")
    if os.getcwd() not in sys.path:  # like pyflyte: modules next to where the command runs
        sys.path.append(os.getcwd())
    try:
        if module_name.endswith(".py"):
            location = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
            if location is None or location.loader is None:
                raise ImportError(f"cannot load {module_name}")
            module = importlib.util.module_from_spec(location)
            sys.modules[location.name] = module  # dataclasses look their module up while the file runs
            location.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except Exception as e:  # the user's module failing to import is a usage error, not our traceback
        raise InputError(f"cannot import {module_name!r}: {e}") from None
    if not hasattr(module, attr):
        raise InputError(f"module {module_name!r} has no {attr!r}")
    return getattr(module, attr)


def cmd_check(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run the checks, print the table, write JUnit XML if asked; 1 when any check failed."""
    from .check import LAG_THRESHOLD, check_connector
    from .connector import AsyncConnector

    connector = load_connector(args.connector)
    if isinstance(connector, type) and issubclass(connector, AsyncConnector):
        connector = connector()
    types = dict(connector.input_types) if isinstance(connector, AsyncConnector) else None
    inputs = parse_assignments(args.inputs, types)
    custom = parse_json_object(args.custom, "--custom")
    try:
        report = check_connector(connector, inputs, custom, version=args.version, target=args.target,
                                 wire=args.wire, timeout=args.timeout,
                                 lag_threshold=args.lag_threshold or LAG_THRESHOLD)
    except (TypeError, ValueError) as e:  # bad options: one line, as every usage error
        raise InputError(str(e)) from None
    print(report.text(), file=out, flush=True)
    if args.junit:
        try:
            report.write_junit(args.junit)
        except OSError as e:
            raise InputError(f"--junit: cannot write {args.junit}: {e.strerror or e}") from None
    return 0 if report.ok else 1


def _recording_path(name: str) -> str:
    if os.path.exists(name):
        return name
    from .recordings import path

    try:
        return str(path(name))
    except ValueError:
        raise InputError(f"no recording {name!r}: not a file, nor a shipped recording") from None


def cmd_replay(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Serve the replay, or launch it and follow it like ``connector-nb run --follow``."""
    from .recording import ReplayConnector
    from .registry import ConnectorRegistry

    try:
        replay = ReplayConnector(_recording_path(args.file), speed=args.speed)
    except ValueError as e:
        if isinstance(e, ConnectorNbError):
            raise
        raise InputError(f"--speed: {e}") from None
    registry = ConnectorRegistry([replay])
    if args.serve:
        return _serve(registry, args.port, out)
    from .session import Session

    inputs = {**replay.recorded_inputs(), **parse_assignments(args.inputs)}
    with Session(registry=registry, journal=False) as session:
        run = session.launch(replay.task_type_name, inputs)
        print(f"replaying {run.run_id} ({replay.task_type_name}, speed {args.speed:g})", file=out, flush=True)
        try:
            follow(run, out)
        except KeyboardInterrupt:
            run.cancel()
        return _report(run, out)






def _report(run: Any, out: TextIO) -> int:
    """The final line and outputs; 0 when the run succeeded, 1 otherwise."""
    print(f"{run.run_id}: {run.phase} in {run.elapsed:.2f} s ({run.get_calls} get calls) {run.message}", file=out)
    for name, value in run.outputs.items():
        text = f"<DataFrame {value.shape[0]} rows x {value.shape[1]} cols>" if hasattr(value, "shape") else repr(value)
        print(f"  output {name} = {text[:200]}", file=out)
    return 0 if run.phase == "SUCCEEDED" else 1


def _serve(registry: Any, port: int, out: TextIO) -> int:
    from .server import serve

    try:
        handle = serve(registry, port=port, host="127.0.0.1", block=False)
    except (OSError, ValueError) as e:
        raise ConnectorNbError(f"cannot serve the replay: {e}") from None
    print(f"replay service listening on {handle.target}", file=out, flush=True)
    handle.serve_until_interrupted()
    return 0


__all__ = ["add_commands", "cmd_check", "cmd_replay", "load_connector"]
