"""Whether we run inside a Jupyter kernel that can show widgets (shared by the views and the mime bundles)."""

from __future__ import annotations


def widgets_available() -> bool:
    """Whether ipywidgets is importable and we run inside an IPython kernel (which has comms)."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


__all__ = ["widgets_available"]
