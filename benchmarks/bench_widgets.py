"""Cost of live widgets: N active runs, each with a RunView, plus one Dashboard; and a Dashboard of 10,000 runs.

Widgets talk through a counting fake comm (as in ipywidgets' own tests), so this needs no frontend. Runs use
a fast poll policy for a fixed window; the same window is measured once without any widget as a baseline,
so the poll rate with views can be compared with the rate without them. The Dashboard part measures the
bytes one update sends with 10,000 runs. ``--browser`` also runs the Chromium test of that Dashboard
(tests/browser/test_dashboard.py, Playwright) and prints its render times.

    .venv/bin/python benchmarks/bench_widgets.py [--runs 1000] [--seconds 3] [--repeat 3] [--browser]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import psutil

SENT: list[int] = [0]
#: Bytes of each message sent (JSON of its data), for the Dashboard's per-update size.
SIZES: list[int] = []
_LOCK = threading.Lock()


class CountingComm:
    """Stands in for a kernel comm: counts messages, sends nothing."""

    comm_id = "bench"
    kernel = "Truthy"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.messages = 0

    def open(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_msg(self, *args: Any, **kwargs: Any) -> None:
        pass

    def send(self, data: Any = None, *args: Any, **kwargs: Any) -> None:
        self.messages += 1
        with _LOCK:
            SENT[0] += 1
            SIZES.append(len(json.dumps(data, default=str)))

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass


def install_counting_comm() -> None:
    import comm
    import ipykernel.comm
    import ipywidgets.widgets.widget as widget_module

    comm.create_comm = lambda **kwargs: CountingComm()
    comm.get_comm_manager = lambda **kwargs: {}
    ipykernel.comm.comm.BaseComm = CountingComm
    widget_module.Widget.comm.klass = CountingComm
    widget_module.Comm = CountingComm


def thread_cpu(name_or_ident: str | int | None) -> float:
    """User+system CPU seconds of one thread of this process (by thread name or native id)."""
    if name_or_ident is None:
        return 0.0
    native = name_or_ident
    if isinstance(name_or_ident, str):
        found = [t.native_id for t in threading.enumerate() if t.name == name_or_ident]
        if not found:
            return 0.0
        native = found[0]
    for t in psutil.Process().threads():
        if t.id == native:
            return t.user_time + t.system_time
    return 0.0


def ui_thread_id() -> int | None:
    from connector_nb.ui.render_scheduler import FLUSHER

    thread = FLUSHER._thread
    return thread.native_id if thread is not None else None


def measure(runs: int, seconds: float, max_interval: float, with_views: bool, settle: float = 0.5) -> dict[str, Any]:
    from connector_nb import ConnectorRegistry, Session
    from connector_nb.testing import FakeConnector, fast_policy

    fake = FakeConnector(script=["RUNNING"])
    session = Session(registry=ConnectorRegistry([fake]), poll=fast_policy(max_interval=max_interval),
                      output_dir=tempfile.mkdtemp(prefix="bench-widgets-"))
    result: dict[str, Any] = {"views": with_views}
    try:
        t0 = time.perf_counter()
        launched = session.launch_many("fake", [{} for _ in range(runs)])
        result["launch_s"] = time.perf_counter() - t0
        views: list[Any] = []
        board = None
        if with_views:
            from connector_nb.ui.dashboard import Dashboard
            from connector_nb.ui.run_view import RunView

            t0 = time.perf_counter()
            views = [RunView(run) for run in launched]
            result["views_s"] = time.perf_counter() - t0
            board = Dashboard(session)
            result["build_s"] = time.perf_counter() - t0
        # Past the first burst of polls; the baseline waits as long as building the views took, so both
        # windows see runs of the same age (poll intervals grow with age).
        time.sleep(settle if not with_views else 0.5)
        gets0, calls0 = sum(r.get_calls for r in launched), len(fake.calls)
        sent0, engine0, ui0 = SENT[0], thread_cpu("connector-nb-engine"), thread_cpu(ui_thread_id())
        per_view0 = sum(_view_messages(v) for v in views)
        board0 = _view_messages(board) if board else 0
        renders0 = sum(v.renders for v in views)
        wall0 = time.perf_counter()
        time.sleep(seconds)
        wall = time.perf_counter() - wall0
        result.update(
            wall_s=wall,
            gets=sum(r.get_calls for r in launched) - gets0,
            get_logs=sum(1 for m, _ in fake.calls[calls0:] if m == "get_logs"),
            messages=SENT[0] - sent0,
            view_messages=sum(_view_messages(v) for v in views) - per_view0,
            board_messages=(_view_messages(board) - board0) if board else 0,
            engine_cpu_s=thread_cpu("connector-nb-engine") - engine0,
            ui_cpu_s=thread_cpu(ui_thread_id()) - ui0,
            renders=sum(v.renders for v in views) - renders0,
        )
        for view in views:
            view.close()
        if board is not None:
            board.close()
    finally:
        asyncio.set_event_loop(None)
        session.close(cancel_running=True)
    return result


def _view_messages(widget: Any) -> int:
    seen, todo, total = set(), [widget], 0
    while todo:
        w = todo.pop()
        if id(w) in seen:
            continue
        seen.add(id(w))
        comm = getattr(w, "comm", None)
        total += getattr(comm, "messages", 0)
        todo.extend(getattr(w, "children", ()))
        layout = getattr(w, "layout", None)
        if layout is not None and hasattr(layout, "comm"):
            todo.append(layout)
    return total


def dashboard_update(runs: int = 10_000) -> dict[str, Any]:
    """Bytes sent by one Dashboard update (a run on the shown page changes) with ``runs`` live runs."""
    from connector_nb import ConnectorRegistry, Session
    from connector_nb.testing import FakeConnector, fast_policy
    from connector_nb.ui.dashboard import Dashboard

    session = Session(registry=ConnectorRegistry([FakeConnector(script=["RUNNING"])]),
                      poll=fast_policy(max_interval=5.0), output_dir=tempfile.mkdtemp(prefix="bench-widgets-"))
    try:
        launched = session.launch_many("fake", [{} for _ in range(runs)])
        t0 = time.perf_counter()
        board = Dashboard(session)
        build = time.perf_counter() - t0
        board._throttle.close()  # only the renders measured here
        board.render_now()
        launched[-1].cancel()
        first = len(SIZES)
        t0 = time.perf_counter()
        board.render_now()
        render = time.perf_counter() - t0
        sizes = SIZES[first:]
        board.close()
    finally:
        session.close(cancel_running=True)
    return {"build_s": build, "render_s": render, "bytes": sum(sizes), "messages": len(sizes),
            "largest": max(sizes, default=0)}


def browser_figures() -> None:
    """Run the Chromium test of a 10,000-run Dashboard and print the figures it prints."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-s",
               "tests/browser/test_dashboard.py"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    figures = [line for line in done.stdout.splitlines() if line.startswith("  dashboard")]
    print("Dashboard in Chromium (Playwright, 10,000 runs):")
    print("\n".join(figures) if figures else f"  no figures (pytest exit {done.returncode}):\n{done.stdout[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--max-interval", type=float, default=0.05, help="poll interval cap (fast_policy: 0.05)")
    parser.add_argument("--dashboard-runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="pairs of windows with and without views")
    parser.add_argument("--browser", action="store_true", help="also measure the render time in Chromium")
    args = parser.parse_args()
    install_counting_comm()

    # Windows with and without views alternate, so a load change on a shared machine hits both alike.
    deltas, builds = [], []
    for _ in range(args.repeat):
        live = measure(args.runs, args.seconds, args.max_interval, with_views=True)
        base = measure(args.runs, args.seconds, args.max_interval, with_views=False, settle=live["build_s"] + 0.5)
        deltas.append((live["gets"] / live["wall_s"]) / (base["gets"] / base["wall_s"]) - 1)
        builds.append(live["views_s"])
    n, wall = args.runs, live["wall_s"]
    base_rate, live_rate = base["gets"] / base["wall_s"], live["gets"] / wall
    print(f"{n} active runs, fast poll policy (max interval {args.max_interval:g} s), window {wall:.2f} s")
    print(f"  launch {n} runs: {live['launch_s']:.2f} s; build {n} RunViews (their runs polling meanwhile): "
          f"{', '.join(f'{b:.2f}' for b in builds)} s, median {sorted(builds)[len(builds) // 2]:.2f} s "
          f"(+ Dashboard: {live['build_s'] - live['views_s']:.2f} s)")
    print(f"  get calls in window: baseline {base['gets']} ({base_rate:.0f}/s), "
          f"with views {live['gets']} ({live_rate:.0f}/s) -> {(live_rate / base_rate - 1) * 100:+.1f}%; "
          f"get_logs by views: {live['get_logs']}")
    print(f"  poll rate with views vs without, per pair: {', '.join(f'{d * 100:+.1f}%' for d in deltas)}; "
          f"median {sorted(deltas)[len(deltas) // 2] * 100:+.1f}%")
    print(f"  comm messages: total {live['messages']} ({live['messages'] / wall:.0f}/s)")
    print(f"    RunViews: {live['view_messages']} = {live['view_messages'] / n / wall:.2f} per view per second "
          f"({live['renders'] / n / wall:.2f} renders per view per second)")
    print(f"    Dashboard: {live['board_messages']} = {live['board_messages'] / wall:.2f} per second")
    print(f"  engine-thread CPU: baseline {base['engine_cpu_s']:.2f} s, with views {live['engine_cpu_s']:.2f} s "
          f"over {wall:.2f} s -> views add {live['engine_cpu_s'] - base['engine_cpu_s']:+.2f} s "
          f"({(live['engine_cpu_s'] - base['engine_cpu_s']) / wall * 100:+.0f}% of one core)")
    print(f"  UI (render) thread CPU: {live['ui_cpu_s']:.2f} s ({live['ui_cpu_s'] / wall * 100:.0f}% of one core)")
    board = dashboard_update(args.dashboard_runs)
    print(f"Dashboard with {args.dashboard_runs:,} runs: built in {board['build_s'] * 1000:.0f} ms; one update "
          f"renders in {board['render_s'] * 1000:.1f} ms (Python) and sends {board['bytes'] / 1024:.1f} KiB in "
          f"{board['messages']} messages (largest {board['largest'] / 1024:.1f} KiB)")
    if args.browser:
        browser_figures()


if __name__ == "__main__":
    main()
