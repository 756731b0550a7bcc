"""Mime bundles for Run and Session: text and HTML always, plus a live widget when a frontend can show one.

A saved notebook (GitHub, nbviewer, VS Code without widgets) then shows the HTML status rather than
"Error displaying widget"; a live Jupyter frontend prefers the widget view.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .. import _display
from . import _kernel, reprs

if TYPE_CHECKING:
    from ..run import Run
    from ..session import AsyncSession, Session

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def widgets_available() -> bool:
    """Whether ipywidgets is importable and we run inside an IPython kernel (which has comms)."""
    return _kernel.widgets_available()
# One live view per object: displaying a run twice shows two views of the same widget model.
_VIEWS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def widget_view_json(widget: Any) -> dict[str, Any]:
    """The widget-view mime data that points a frontend at ``widget``."""
    return {"version_major": 2, "version_minor": 0, "model_id": widget.model_id}


def _filtered(bundle: dict[str, Any], include: Iterable[str] | None, exclude: Iterable[str] | None) -> dict[str, Any]:
    if include:
        bundle = {k: v for k, v in bundle.items() if k in set(include)}
    if exclude:
        bundle = {k: v for k, v in bundle.items() if k not in set(exclude)}
    return bundle


def _bundle(obj: Any, text: str, html: str, make_view: Callable[[], Any], include: Any, exclude: Any) -> dict[str, Any]:
    bundle: dict[str, Any] = {"text/plain": text, "text/html": html}
    wanted = (not include or WIDGET_MIME in include) and not (exclude and WIDGET_MIME in exclude)
    if wanted and widgets_available():
        view = _VIEWS.get(obj)
        if view is None or getattr(view, "comm", None) is None:
            view = _VIEWS[obj] = make_view()
        bundle[WIDGET_MIME] = widget_view_json(view)
    return _filtered(bundle, include, exclude)


def run_mimebundle(
    run: Run, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
) -> dict[str, Any]:
    """``Run._repr_mimebundle_``: text/plain, text/html and, in a kernel with ipywidgets, a live RunView."""
    def make() -> Any:
        from .run_view import RunView

        return RunView(run)

    return _bundle(run, reprs.run_text(run), reprs.run_html(run), make, include, exclude)


def session_mimebundle(
    session: Session | AsyncSession, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
) -> dict[str, Any]:
    """``Session._repr_mimebundle_``: text/plain, text/html and, in a kernel with ipywidgets, a Dashboard."""
    def make() -> Any:
        from .dashboard import Dashboard

        return Dashboard(session)

    return _bundle(session, reprs.session_text(session), reprs.session_html(session), make, include, exclude)


class SessionUI:
    """What ``%connector ui`` returns: a launch panel over a dashboard in a widget frontend, status elsewhere.

    Returning this rather than a bare VBox keeps saved notebooks, GitHub and nbviewer readable.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def widget(self) -> Any:
        """The launch panel over the dashboard."""
        import ipywidgets as w

        from .dashboard import Dashboard
        from .launch_panel import LaunchPanel

        return w.VBox([LaunchPanel(self.session), Dashboard(self.session)])

    def _repr_mimebundle_(
        self, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
    ) -> dict[str, Any]:
        text = "launch panel and dashboard (live widgets need a Jupyter frontend)\n" + reprs.session_text(self.session)
        return _bundle(self, text, reprs.session_html(self.session), self.widget, include, exclude)


def _session_html(session: Any) -> str:
    return reprs.session_html(session)


# The core asks for these by name (``connector_nb._display``): it never imports the UI itself.
_display.register("Run", reprs.run_html, run_mimebundle)
_display.register("Session", _session_html, session_mimebundle)
_display.register("AsyncSession", _session_html, session_mimebundle)

__all__ = ["SessionUI", "WIDGET_MIME", "run_mimebundle", "session_mimebundle", "widget_view_json", "widgets_available"]
