"""``%connector`` / ``%%connector`` magics (``%load_ext connector_nb``).

The magics keep a current :class:`~connector_nb.session.Session` in the user namespace as
``connector_session`` (an in-process one, created on first use; ``%connector connect TARGET`` replaces it).
Bad arguments raise ``UsageError``: IPython shows one line, no traceback.
"""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING, Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.utils.process import arg_split  # type: ignore[attr-defined]  # re-exported, not declared

from ._args import (
    MAX_DEPTH,
    MAX_TEXT,
    check_nesting,
    declared_input_types,
    parse_assignments,
    parse_json_object,
)
from .errors import ConnectorNbError, InputError, UnknownTaskTypeError

if TYPE_CHECKING:
    from .session import Run, Session

#: The name of the current session in the user namespace.
SESSION_NAME = "connector_session"
SUBCOMMANDS = ("list", "launch", "status", "wait", "cancel", "logs", "metrics", "runs", "connect", "ui", "register",
               "recover", "reattach", "check")


def usage(message: Any) -> UsageError:
    """A one-line UsageError."""
    text = str(message.args[0] if isinstance(message, KeyError) and message.args else message)
    return UsageError(text.strip().splitlines()[0] if text.strip() else type(message).__name__)


def parse_cell(cell: str) -> dict[str, Any]:
    """A ``%%connector launch`` body: YAML or JSON with ``task`` and optional inputs, custom, version."""
    import yaml

    if len(cell) > MAX_TEXT:
        raise UsageError(f"cell is {len(cell)} characters, more than the {MAX_TEXT} allowed")
    try:
        spec = yaml.safe_load(cell) or {}
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise UsageError(f"cell is nested deeper than {MAX_DEPTH} levels") from None
    except yaml.YAMLError as e:
        raise usage(f"cell is not valid YAML/JSON: {str(e).splitlines()[0]}") from None
    except (ValueError, OverflowError) as e:  # a scalar YAML resolves but cannot build (2024-13-45, huge ints)
        raise usage(f"cell has a value that cannot be read: {e}") from None
    try:
        check_nesting(spec, "cell")  # also catches self-referencing and exponential YAML aliases
    except InputError as e:
        raise UsageError(str(e)) from None
    if not isinstance(spec, dict) or "task" not in spec:
        raise UsageError("cell must be a mapping with a 'task' key, e.g. {task: sleep, inputs: {seconds: 1}}")
    unknown = set(spec) - {"task", "inputs", "custom", "version"}
    if unknown:
        raise UsageError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}; expected task, inputs, custom, "
                         "version")
    for key in ("inputs", "custom"):
        if spec.get(key) is not None and not isinstance(spec[key], dict):
            raise UsageError(f"{key!r} must be a mapping, got {type(spec[key]).__name__}")
    return spec


@magics_class
class ConnectorMagics(Magics):
    """Holds the magics' current session (closed on unload)."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self._own: Session | None = None

    # -- the session -----------------------------------------------------------------------------
    @property
    def _ns(self) -> dict[str, Any]:
        """The notebook's namespace."""
        assert self.shell is not None, "the magics are registered with a shell"
        return self.shell.user_ns  # type: ignore[no-any-return]

    @property
    def session(self) -> Session:
        """The user's ``connector_session`` if it is an open Session, else one this extension owns."""
        from .session import Session

        current = self._ns.get(SESSION_NAME)
        if isinstance(current, Session) and not current.closed:
            return current
        if self._own is None or self._own.closed:
            self._own = Session()
        self._ns[SESSION_NAME] = self._own
        return self._own

    def close(self) -> None:
        """Close the magics' session (on ``%unload_ext``)."""
        own, self._own = self._own, None
        if own is not None:
            if self._ns.get(SESSION_NAME) is own:
                del self._ns[SESSION_NAME]
            own.close()

    def resolve_run(self, token: str) -> Run:
        """A run id, or the name of a variable holding a Run."""
        from .run import Run

        value = self._ns.get(token)
        if isinstance(value, Run):
            return value
        try:
            return self.session.get_run(token)
        except LookupError as e:
            raise usage(e) from None

    # -- the magic -------------------------------------------------------------------------------
    @magic_arguments()
    @argument("subcommand", help="one of: " + ", ".join(SUBCOMMANDS))
    @argument("args", nargs="*", help="the subcommand's arguments: TASK k=v..., RUN, TARGET or CLASSNAME")
    @argument("--version", type=int, default=None, help="launch: task type version (default 0)")
    @argument("--wait", action="store_true", help="launch: wait until the run has finished")
    @argument("--custom", default=None, help="launch: the template's custom field, as a JSON object")
    @argument("--step", action="store_true", help="launch: step mode (no auto-polling; use Refresh/Step)")
    @argument("--all", action="store_true", help="cancel: every live run; reattach: every recoverable run")
    @argument("--override", action="store_true", help="register: replace a different connector of that task type")
    @argument("--wire", action="store_true", help="check: also serve the connector and check it through gRPC")
    @line_cell_magic
    def connector(self, line: str, cell: str | None = None) -> Any:
        """Run connector tasks live in the notebook.

        Subcommands::

          %connector list                               connectors of the current session (DataFrame)
          %connector launch TASK k=v ... [--version N] [--wait] [--custom JSON] [--step]
                                                        launch a run and return it (values are JSON or str)
          %connector status [RUN]                       one run's status, or every run's
          %connector wait RUN                           block until RUN has finished
          %connector cancel RUN | --all                 cancel a run, or every live run
          %connector logs RUN                           the run's logs
          %connector metrics RUN                        the run's metrics (DataFrame)
          %connector runs                               every run of the session (DataFrame)
          %connector connect TARGET                     use Session(TARGET), e.g. grpc://host:8000
          %connector ui                                 launch panel and dashboard
          %connector register CLASSNAME [--override]    register a connector class from the namespace
          %connector recover                            runs earlier kernels left unfinished (DataFrame)
          %connector reattach RUN_ID | --all            track them again here (returns the Run or Runs)
          %connector check TASK k=v ... [--wire]        judge the connector: one row per check (DataFrame)

          %%connector launch [--wait]                   the cell is YAML or JSON:
          task: sleep                                   {task, inputs, custom, version}
          inputs: {seconds: 1}

        RUN is a run id or the name of a variable holding a Run. The session is ``connector_session``.
        """
        try:
            args = self.connector.parser.parse_intermixed_args(arg_split(line))
        except ValueError as e:  # unbalanced quotes
            raise usage(f"cannot parse arguments: {e}") from None
        handler: Callable[[Any, str | None], Any] | None = getattr(self, f"_do_{args.subcommand}", None)
        if args.subcommand not in SUBCOMMANDS or handler is None:
            raise UsageError(f"unknown subcommand {args.subcommand!r}; expected one of: {', '.join(SUBCOMMANDS)}")
        if cell is not None and args.subcommand != "launch":
            raise UsageError("only '%%connector launch' takes a cell body")
        return handler(args, cell)

    # -- subcommands -----------------------------------------------------------------------------
    def _do_list(self, args: Any, _cell: str | None) -> Any:
        import pandas as pd

        self._no_args(args)
        infos = self.session.connectors()
        rows = [{"task_type": i.task_type, "version": i.version, "name": i.name, "is_sync": i.is_sync}
                for i in sorted(infos, key=lambda i: (i.task_type, i.version))]
        return pd.DataFrame(rows, columns=["task_type", "version", "name", "is_sync"])

    def _do_launch(self, args: Any, cell: str | None) -> Run:
        if cell is not None:
            if args.args:
                raise UsageError("with a cell body, give the task and inputs in the cell, not on the line")
            spec = parse_cell(cell)
            task, inputs = str(spec["task"]), dict(spec.get("inputs") or {})
            custom, version = spec.get("custom"), spec.get("version", 0)
        else:
            if not args.args:
                raise UsageError("launch needs a task type: %connector launch TASK k=v ...")
            try:
                task = args.args[0]
                types = declared_input_types(self.session.registry, task, args.version or 0)
                inputs = parse_assignments(args.args[1:], types)
                custom, version = parse_json_object(args.custom, "--custom"), 0
            except InputError as e:
                raise usage(e) from None
        if args.version is not None:
            version = args.version
        if not isinstance(version, int):
            raise UsageError(f"version must be an integer, got {version!r}")
        try:
            run = self.session.launch(task, inputs, version=version, custom=custom, autopoll=not args.step)
        except (InputError, UnknownTaskTypeError) as e:
            raise usage(e) from None
        if args.wait:
            self._wait(run)
        return run

    def _do_status(self, args: Any, _cell: str | None) -> None:
        from .ui.reprs import run_text, session_text

        if len(args.args) > 1:
            raise UsageError("status takes at most one RUN")
        print(run_text(self.resolve_run(args.args[0])) if args.args else session_text(self.session))

    def _do_wait(self, args: Any, _cell: str | None) -> Run:
        run = self.resolve_run(self._one(args, "wait RUN"))
        self._wait(run)
        return run

    def _do_cancel(self, args: Any, _cell: str | None) -> Any:
        if self._all(args, "cancel RUN"):
            print(f"cancelled {len(self.session.cancel_all())} run(s)")
            return None
        run = self.resolve_run(self._one(args, "cancel RUN | --all"))
        run.cancel()
        print(f"{run.run_id}: {run.phase}")
        return None

    def _do_logs(self, args: Any, _cell: str | None) -> Any:
        return self.resolve_run(self._one(args, "logs RUN")).logs()

    def _do_metrics(self, args: Any, _cell: str | None) -> Any:
        return self.resolve_run(self._one(args, "metrics RUN")).metrics()

    def _do_runs(self, args: Any, _cell: str | None) -> Any:
        self._no_args(args)
        return self.session.runs_frame()

    def _do_recover(self, args: Any, _cell: str | None) -> Any:
        self._no_args(args)
        return self.session.recover()

    def _do_reattach(self, args: Any, _cell: str | None) -> Any:
        if self._all(args, "reattach RUN_ID"):
            runs = self.session.reattach_all()
            print(f"reattached {len(runs)} run(s)")
            return runs
        try:
            return self.session.reattach(self._one(args, "reattach RUN_ID | --all"))
        except ConnectorNbError as e:  # unknown id (lists recent ones), or no handle to poll
            raise usage(e) from None

    def _do_connect(self, args: Any, _cell: str | None) -> None:
        from .session import Session

        target = self._one(args, "connect TARGET")
        try:
            new = Session(target)
        except (ConnectorNbError, ValueError, OSError) as e:
            raise usage(f"cannot connect to {target!r}: {e}") from None
        old = self._ns.get(SESSION_NAME)
        if isinstance(old, Session) and not old.closed:
            old.close()
        if self._own is not None and not self._own.closed:
            self._own.close()
        self._own = new
        self._ns[SESSION_NAME] = new
        print(f"connected: {new.target} (as {SESSION_NAME})")

    def _do_ui(self, args: Any, _cell: str | None) -> Any:
        from .ui.display import SessionUI

        self._no_args(args)
        return SessionUI(self.session)

    def _do_register(self, args: Any, _cell: str | None) -> None:
        name = self._one(args, "register CLASSNAME [--override]")
        if name not in self._ns:
            raise UsageError(f"no variable {name!r} in the namespace; define the connector class first")
        registry = self.session.registry
        if registry is None:
            raise UsageError("the current session is remote: register connectors in the connector service")
        obj = self._ns[name]
        try:
            instance = obj() if isinstance(obj, type) else obj  # a class may set its task type in __init__
            key = (str(getattr(instance, "task_type_name", "")), int(getattr(instance, "task_type_version", 0) or 0))
            replaced = key in registry
            with warnings.catch_warnings():  # the notice below says it instead
                warnings.simplefilter("ignore")
                connector = registry.register(instance, override=args.override)
        except (ConnectorNbError, TypeError, ValueError) as e:
            raise usage(e) from None
        note = " (replaced the previous definition)" if replaced else ""
        print(f"registered {name} for task type {connector.task_type_name!r} v{connector.task_type_version}{note}")

    def _do_check(self, args: Any, _cell: str | None) -> Any:
        from .check import check_connector

        if not args.args:
            raise UsageError("check needs a task type: %connector check TASK k=v ... [--wire]")
        task, version = args.args[0], args.version or 0
        registry = self.session.registry
        try:
            inputs = parse_assignments(args.args[1:], declared_input_types(registry, task, version))
            custom = parse_json_object(args.custom, "--custom")
            if registry is None:  # a remote session: check the task type on its service
                report = check_connector(task, inputs, custom, version=version, target=self.session.target)
            else:
                report = check_connector(task, inputs, custom, version=version, registry=registry, wire=args.wire)
        except (InputError, UnknownTaskTypeError, TypeError) as e:
            raise usage(e) from None
        return report.frame()

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _all(args: Any, form: str) -> bool:
        """Whether ``--all`` was given (then with no RUN: "cancel RUN or --all", not both)."""
        if args.all and args.args:
            raise UsageError(f"{form.split()[0]} takes a {form.split()[1]} or --all, not both")
        return bool(args.all)

    @staticmethod
    def _one(args: Any, form: str) -> str:
        if len(args.args) != 1:
            raise UsageError(f"expected: %connector {form}")
        return str(args.args[0])

    @staticmethod
    def _no_args(args: Any) -> None:
        if args.args:
            raise UsageError(f"{args.subcommand} takes no arguments, got {' '.join(args.args)!r}")

    @staticmethod
    def _wait(run: Run) -> None:
        try:
            run.wait()  # Ctrl-C: WaitInterrupted says in one line that the run goes on (as in the CLI's --follow)
        except ConnectorNbError as e:  # polling stopped on errors: the run (with .error) is still returned
            print(f"{run.run_id}: {e}", file=sys.stderr)


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%connector``/``%%connector`` (replacing an earlier registration, for ``%reload_ext``)."""
    unload_ipython_extension(ipython)
    ipython.register_magics(ConnectorMagics(ipython))


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics and close the session they created."""
    manager = ipython.magics_manager
    magics = manager.registry.pop(ConnectorMagics.__name__, None)
    for kind in ("line", "cell"):
        owner = getattr(manager.magics[kind].get("connector"), "__self__", None)
        if type(owner).__name__ == ConnectorMagics.__name__:  # by name: survives a reload of this module
            manager.magics[kind].pop("connector", None)
    if isinstance(magics, ConnectorMagics):
        magics.close()


__all__ = ["ConnectorMagics", "load_ipython_extension", "unload_ipython_extension"]
