"""LaunchPanel: pick a connector, fill a form generated from its interface, launch, watch the run below.

The form is typed from the task template (IntText, FloatText, Text, Checkbox, JSON Textarea). Launching
goes through the engine loop without waiting, and every error is shown inline in ``cnb-form-error``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, Mapping

import ipywidgets as w

from ..errors import ConnectorNbError
from ..secrets import is_secret_name, remember
from . import reprs
from .render_scheduler import Throttle
from .run_view import RunView, button, html_widget, submit

if TYPE_CHECKING:
    from flyteidl.core import types_pb2

    from ..session import Run, Session

_LABEL = w.Layout(width="auto")
_STYLE = {"description_width": "initial"}


#: What a launch from a closed session's panel says (one line, with what to re-run).
CLOSED_LINE = "This session is closed: re-run the cell that creates the session, then this cell."


class FormError(ValueError):
    """A form value could not be read (bad JSON, empty required field)."""


class Field:
    """One input: its widget and how to read a Python value back from it."""

    def __init__(self, name: str, type_name: str, widget: w.Widget, read: Callable[[Any], Any],
                 forget: Callable[[], None] | None = None) -> None:
        self.name, self.type_name, self.widget, self._read, self._forget = name, type_name, widget, read, forget

    @property
    def secret(self) -> bool:
        """Whether this is a password field (its value is cleared after each launch)."""
        return isinstance(self.widget, w.Password)

    def value(self) -> Any:
        """The typed value of the field (FormError when it does not parse)."""
        try:
            value = self._read(self.widget.value)
        except ValueError as e:
            raise FormError(f"input {self.name!r} ({self.type_name}): {e}") from None
        if self.secret:
            remember(value)  # masked by value from now on, wherever it shows up
        return value

    def clear_secret(self) -> None:
        """Forget a password field's value after a launch (it never stays in widget state either way)."""
        if self.secret:
            self.widget.value = ""
            if self._forget is not None:
                self._forget()


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


def _optional_value(simple: str) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        if not text.strip():
            return None
        return text if simple == "str" else _json(text)

    return read


def make_field(name: str, type_name: str, default: Any = None) -> Field:
    """A typed widget for ``type_name`` as given by ``literals.type_name`` ("int", "list[int]", "str | None"...)."""
    label = f"{name} ({type_name})"
    common: dict[str, Any] = {"description": label, "style": _STYLE}
    secret = is_secret_name(name)
    if type_name == "int":
        return Field(name, type_name, w.IntText(value=int(default or 0), **common), int)
    if type_name == "float":
        return Field(name, type_name, w.FloatText(value=float(default or 0.0), **common), float)
    if type_name == "bool":
        return Field(name, type_name, w.Checkbox(value=bool(default), indent=False, **common), bool)
    if type_name == "str" and secret:
        return _password_field(name, type_name, default, common, optional=False)
    if type_name == "str":
        return Field(name, type_name, w.Text(value="" if default is None else str(default), **common), str)
    parts = [p.strip() for p in type_name.split("|")]
    simple = [p for p in parts if p != "None"]
    if "None" in parts and simple == ["str"] and secret:
        return _password_field(name, type_name, default, common, optional=True)
    if "None" in parts and len(simple) == 1 and simple[0] in ("int", "float", "str", "bool"):
        text = "" if default is None else (str(default) if simple[0] == "str" else json.dumps(default))
        widget = w.Text(value=text, placeholder="empty = None", **common)
        return Field(name, type_name, widget, _optional_value(simple[0]))
    text = "" if default is None else json.dumps(default, indent=1, default=str)
    widget = w.Textarea(value=text, placeholder="JSON", rows=3, **common)
    optional = "None" in parts
    return Field(name, type_name, widget, lambda t: None if optional and not t.strip() else _json(t))


def _password_field(name: str, type_name: str, default: Any, common: dict[str, Any], *, optional: bool) -> Field:
    """A Password widget whose synced state never holds a secret.

    The default stays in the kernel; a typed value is taken into the kernel as soon as it reaches it (on
    Enter or leaving the field) and the widget is emptied at once, so a saved notebook's widget state, which
    holds what the widget shows, never carries it, launched or not.
    """
    fallback = None if default is None else str(default)
    if fallback is not None:
        remember(fallback)
    hint = "empty = default" if fallback is not None else ("empty = None" if optional else "")
    widget = w.Password(value="", placeholder=hint, **{**common, "continuous_update": False})
    kept: dict[str, str] = {}

    def take(change: dict[str, Any]) -> None:
        if change["new"]:
            kept["value"] = change["new"]
            remember(change["new"])
            widget.value, widget.placeholder = "", "•••• set (type to replace)"

    def read(text: str) -> Any:
        value = text or kept.get("value", "")
        if value:
            return value
        return fallback if fallback is not None or optional else ""

    def clear() -> None:
        kept.clear()
        widget.value, widget.placeholder = "", hint

    widget.observe(take, "value")
    return Field(name, type_name, widget, read, clear)


def template_fields(task_type: str, version: int, session: Session) -> list[Field] | None:
    """Fields for an in-process connector's interface; None for remote targets (no interface published)."""
    registry = session.registry
    if registry is None:
        return None
    from ..literals import type_name
    from ..template import interface_types

    connector = registry.get_connector(task_type, version)
    types: Mapping[str, types_pb2.LiteralType] = interface_types(connector.task_template())[0]
    defaults = dict(connector.input_defaults)
    # The template's interface is a protobuf map (no order): show fields in the connector's declared order.
    declared = list(connector.input_types)
    names = sorted(types, key=lambda n: declared.index(n) if n in declared else len(declared))
    return [make_field(name, type_name(types[name]), defaults.get(name)) for name in names]


class LaunchPanel(w.VBox):
    """Launch form over a session; each launched run gets a :class:`RunView` below the form."""

    def __init__(self, session: Session, *, max_views: int = 20) -> None:
        super().__init__()
        self.session = session
        self.max_views = max_views
        self.fields: list[Field] = []
        self.launched: list[Run] = []
        self._pending: list[Run] = []
        self._status = ""
        self._error = ""
        self._launching = False
        self.connector = w.Dropdown(description="connector", style=_STYLE, layout=_LABEL)
        self.connector.add_class("cnb-connector")
        self.form = w.VBox()
        self.form.add_class("cnb-form")
        self.custom = w.Textarea(value="{}", description="custom (JSON)", rows=2, style=_STYLE)
        self.custom.add_class("cnb-custom")
        self.launch_button = button("Launch", "cnb-launch", icon="play", button_style="primary")
        self.form_error = html_widget("cnb-form-error")
        self.status = html_widget("cnb-launch-status")
        self.views = w.VBox()
        self.views.add_class("cnb-run-views")
        self.children = [self.connector, self.form, self.custom,
                         w.HBox([self.launch_button, self.status]), self.form_error, self.views]
        self.add_class("cnb-launch-panel")
        self._throttle = Throttle(self._render, lambda: [self.form_error, self.status, self.launch_button,
                                                         self.views])
        self.connector.observe(lambda _c: self._build_form(), "value")
        self.launch_button.on_click(lambda _b: self.launch())
        self._load_connectors()

    # -- form ------------------------------------------------------------------------------------
    def _load_connectors(self) -> None:
        try:
            infos = self.session.connectors()
        except Exception as e:
            self._show_error(f"cannot list connectors: {e}")
            return
        self.connector.options = [(f"{i.task_type} (v{i.version}) — {i.name}", (i.task_type, i.version))
                                  for i in sorted(infos, key=lambda i: (i.task_type, i.version))]
        if self.connector.options:
            self.connector.index = 0  # builds the form through the observer
        else:
            self._build_form()

    def _build_form(self) -> None:
        self._error = ""
        if self.connector.value is None:
            self.fields, self.form.children = [], []
            return
        task_type, version = self.connector.value
        try:
            fields = template_fields(task_type, version, self.session)
        except Exception as e:
            self.fields, self.form.children = [], []
            self._show_error(str(e))
            return
        if fields is None:  # remote target: no interface, so a JSON editor of all inputs
            fields = [Field("inputs", "json", w.Textarea(value="{}", description="inputs (JSON)", rows=4,
                                                         style=_STYLE), _json)]
        self.fields = fields
        self.form.children = [f.widget for f in fields]
        self._throttle.flush()

    def values(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(inputs, custom) read from the form; raises FormError naming the bad field."""
        if len(self.fields) == 1 and self.fields[0].name == "inputs" and self.session.registry is None:
            inputs = self.fields[0].value()
            if not isinstance(inputs, dict):
                raise FormError("inputs must be a JSON object")
        else:
            inputs = {f.name: v for f in self.fields if (v := f.value()) is not None}
        try:
            custom = _json(self.custom.value or "{}")
        except ValueError as e:
            raise FormError(f"custom: {e}") from None
        if not isinstance(custom, dict):
            raise FormError("custom must be a JSON object")
        return inputs, custom

    # -- launching -------------------------------------------------------------------------------
    def launch(self) -> None:
        """Read the form and launch on the engine loop; returns at once."""
        if self._launching or self.connector.value is None:
            return
        if self.session.closed:
            self._show_error(CLOSED_LINE)
            return
        try:
            inputs, custom = self.values()
        except FormError as e:
            self._show_error(str(e))
            return
        finally:
            for field in self.fields:  # read once, then gone from the widget state
                field.clear_secret()
        task_type, version = self.connector.value
        self._launching, self._error, self._status = True, "", f"launching {task_type}…"
        self._throttle.flush()
        coro = self.session.async_session.launch(task_type, inputs, version=version, custom=custom or None)
        submit(self.session, coro, self._launched)

    def _launched(self, error: BaseException | None, run: Run | None) -> None:
        self._launching = False
        if error is not None:
            self._error, self._status = _one_line(error), ""
        else:
            assert run is not None
            self._pending.append(run)
            self._status = f"launched {run.run_id}"
        self._throttle.mark()

    def _show_error(self, message: str) -> None:
        self._error = message
        self._throttle.flush()

    def _render(self) -> None:
        self.form_error.value = (f"<div class='cnb-form-error' style='color:#dc3545'>{reprs.esc(self._error)}</div>"
                                 if self._error else "")
        self.status.value = reprs.esc(self._status)
        self.launch_button.disabled = self._launching
        pending, self._pending = self._pending, []
        if pending:
            self.launched.extend(pending)
            views = [RunView(run) for run in pending[::-1]]
            self.views.children = tuple([*views, *self.views.children][: self.max_views])

    @property
    def run_views(self) -> list[RunView]:
        """The RunViews of the runs launched from this panel."""
        return list(self.views.children)


def _one_line(error: BaseException) -> str:
    """A launch error as one readable line (never a traceback)."""
    if isinstance(error, ConnectorNbError):
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"{type(error).__name__}: {error}".splitlines()[0]


__all__ = ["CLOSED_LINE", "Field", "FormError", "LaunchPanel", "make_field", "template_fields"]
