"""Notebook UI: widgets (ipywidgets, lazily imported) and HTML/text reprs that need no widgets."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "RunView": "run_view",
    "LaunchPanel": "launch_panel",
    "Dashboard": "dashboard",
    "Progress": "progress",
    "progress": "progress",
    "run_mimebundle": "display",
    "session_mimebundle": "display",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'connector_nb.ui' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return __all__
