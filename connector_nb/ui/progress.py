"""``progress(runs_or_session)``: a dask-style progress bar that returns at once and stays live."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import ipywidgets as w

from ..run import phase_counts
from . import reprs
from .render_scheduler import Throttle

if TYPE_CHECKING:
    from ..run import Run


class Progress(w.VBox):
    """Finished / total runs as a bar, with counts per phase (``cnb-counts``)."""

    def __init__(self, source: Any, *, interval: float = 0.25) -> None:
        super().__init__()
        self._session = getattr(source, "async_session", None) or (source if hasattr(source, "counts") else None)
        self._runs: list[Run] = [] if self._session is not None else list(source)
        self.bar = w.IntProgress(min=0, max=1, value=0, bar_style="info", layout=w.Layout(width="320px"))
        self.bar.add_class("cnb-progress")
        self.label = w.HTML()
        self.label.add_class("cnb-counts")
        self.children = [w.HBox([self.bar, self.label])]
        self.add_class("cnb-progress-view")
        self._throttle = Throttle(self._render, lambda: [self.bar, self.label], interval)
        mark = lambda _run: self._throttle.mark()  # noqa: E731
        if self._session is not None:
            self._unsubscribe = [self._session.on_change(mark)]
        else:
            self._unsubscribe = [run.on_change(mark) for run in self._runs]
        self._throttle.flush()

    def runs(self) -> list[Run]:
        """The runs counted."""
        return list(self._session.runs) if self._session is not None else self._runs

    def _render(self) -> None:
        runs = self.runs()
        done = sum(r.done for r in runs)
        counts = phase_counts(runs)
        self.bar.max, self.bar.value = max(1, len(runs)), done
        failed = counts.get("FAILED", 0) + counts.get("ABORTED", 0)
        self.bar.bar_style = "danger" if failed else ("success" if runs and done == len(runs) else "info")
        self.label.value = f"{done}/{len(runs)} done {reprs.counts_html(counts)}"

    def close(self) -> None:
        """Stop updates and close the widget."""
        self._throttle.close()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        super().close()


def progress(runs_or_session: Iterable[Run] | Any) -> Progress:
    """Show live progress of some runs (or every run of a session) and return at once, like dask's."""
    view = Progress(runs_or_session)
    try:
        from IPython.display import display

        display(view)
    except ImportError:  # pragma: no cover - IPython is a dependency
        pass
    return view


__all__ = ["Progress", "progress"]
