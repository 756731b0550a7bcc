"""Display hooks: how core objects (Run, Session) show in a notebook, supplied by the UI side.

The core never imports ``connector_nb.ui``: the UI registers its hooks here when it is loaded, and the
first display asks for it by name. Without a UI (or if it fails to load) objects still show as text.
"""

from __future__ import annotations

import html
import importlib
import logging
from typing import Any, Callable

log = logging.getLogger(__name__)
HtmlHook = Callable[[Any], str]
BundleHook = Callable[[Any, Any, Any], dict[str, Any]]
_HOOKS: dict[str, tuple[HtmlHook, BundleHook]] = {}
#: The module that registers the default hooks when first needed.
UI_MODULE = "connector_nb.ui.display"


def register(kind: str, html: HtmlHook, mimebundle: BundleHook) -> None:
    """Register how objects whose class is named ``kind`` render as HTML and as a mime bundle."""
    _HOOKS[kind] = (html, mimebundle)


def _hooks(obj: Any) -> tuple[HtmlHook, BundleHook] | None:
    if not _HOOKS:
        try:
            importlib.import_module(UI_MODULE)
        except ImportError as e:  # e.g. a stripped-down install: text is still there
            log.debug("no notebook UI: %s", e)
    for cls in type(obj).__mro__:
        if cls.__name__ in _HOOKS:
            return _HOOKS[cls.__name__]
    return None


def repr_html(obj: Any) -> str:
    """``_repr_html_`` of a core object."""
    hooks = _hooks(obj)
    return hooks[0](obj) if hooks else f"<pre>{html.escape(repr(obj))}</pre>"


def repr_mimebundle(obj: Any, include: Any = None, exclude: Any = None) -> dict[str, Any]:
    """``_repr_mimebundle_`` of a core object: a live widget where possible, HTML and text always."""
    hooks = _hooks(obj)
    return hooks[1](obj, include, exclude) if hooks else {"text/plain": repr(obj)}
