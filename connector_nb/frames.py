"""Metrics, logs, transitions and runs as pandas DataFrames (pandas imported lazily)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Protocol, cast

if TYPE_CHECKING:
    import pandas as pd
    from flyteidl.admin import agent_pb2



class TransitionLike(Protocol):
    """What a transition row needs (``run.Transition`` has it)."""

    @property
    def phase(self) -> str:
        """The phase name."""

    @property
    def message(self) -> str:
        """The message recorded with it."""

    @property
    def at(self) -> datetime:
        """When it was recorded."""

    @property
    def flag(self) -> str:
        """Why it is odd, if it is."""


class RunLike(Protocol):
    """What a run row needs (``run.Run`` has it)."""

    run_id: str

    @property
    def task_type(self) -> str:
        """The task type name."""

    def summary(self) -> dict[str, Any]:
        """One row of a runs table."""

    def timeline(self) -> pd.DataFrame:
        """The run's transitions as a frame."""


class JournalLike(Protocol):
    """What ``with_history`` reads from a journal."""

    def frame(self) -> pd.DataFrame:
        """Every journaled run as a frame."""

METRIC_COLUMNS = ["metric", "timestamp", "value"]


def metrics_frame(response: agent_pb2.GetTaskMetricsResponse) -> pd.DataFrame:
    """Tidy frame of a metrics response: ``metric``, ``timestamp``, ``value`` and one column per label.

    Each ``ExecutionMetricResult.data`` is a Prometheus range-query result:
    ``{"result": [{"metric": {labels}, "values": [[unix_ts, "value"], ...]}]}`` (``"value"`` for instant).
    """
    import pandas as pd
    from google.protobuf import json_format

    rows = []
    for result in response.results:
        data = json_format.MessageToDict(result.data)
        for series in data.get("result", []):
            labels = {k: v for k, v in (series.get("metric") or {}).items() if k not in METRIC_COLUMNS}
            for point in series.get("values") or ([series["value"]] if "value" in series else []):
                rows.append({"metric": result.metric, "timestamp": float(point[0]), "value": float(point[1]), **labels})
    frame = pd.DataFrame(rows, columns=None if rows else METRIC_COLUMNS)
    if rows:
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="s", utc=True)
        frame = frame.sort_values(["metric", "timestamp"], kind="stable").reset_index(drop=True)
    return cast("pd.DataFrame", frame)


def time_in_phases(transitions: Iterable[TransitionLike], until: datetime | None = None) -> list[float]:
    """Seconds spent in each transition's phase (the last one up to ``until``, or now while live)."""
    items = list(transitions)
    end = until or datetime.now(timezone.utc)
    return [max(0.0, ((items[i + 1].at if i + 1 < len(items) else end) - t.at).total_seconds())
            for i, t in enumerate(items)]


def clock(at: datetime) -> str:
    """A transition time as shown to people: ``HH:MM:SS.mmm``."""
    return f"{at:%H:%M:%S.%f}"[:-3]


def transitions_frame(transitions: Iterable[TransitionLike], until: datetime | None = None) -> pd.DataFrame:
    """One row per transition, with the time spent in each phase (the last one up to ``until`` or now)."""
    import pandas as pd

    items = list(transitions)
    rows = [{"phase": t.phase, "message": t.message, "at": t.at, "duration_s": spent, "flag": t.flag}
            for t, spent in zip(items, time_in_phases(items, until))]
    return cast("pd.DataFrame", pd.DataFrame(rows, columns=["phase", "message", "at", "duration_s", "flag"]))


def runs_frame(runs: Iterable[RunLike]) -> pd.DataFrame:
    """One row per run: id, task type, phase, start, duration, get calls and last message."""
    import pandas as pd

    rows = [run.summary() for run in runs]
    columns = ["run_id", "task_type", "phase", "started", "duration_s", "get_calls", "message"]
    return cast("pd.DataFrame", pd.DataFrame(rows, columns=columns))


def timelines_frame(runs: Iterable[RunLike]) -> pd.DataFrame:
    """Every transition of every run, for a Gantt-style plot of many runs."""
    import pandas as pd

    frames = []
    for run in runs:
        frame = run.timeline()
        frame.insert(0, "run_id", run.run_id)
        frame.insert(1, "task_type", run.task_type)
        frames.append(frame)
    if not frames:
        return cast("pd.DataFrame", pd.DataFrame(columns=["run_id", "task_type", "phase", "message", "at",
                                                          "duration_s", "flag"]))
    return pd.concat(frames, ignore_index=True)


RECOVERY_COLUMNS = ["run_id", "task_type", "target", "age", "phase", "unknown_outcome", "started_at", "message"]


def recovery_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Unfinished runs of earlier processes: id, task type, target, age, last phase, unknown-outcome flag."""
    import pandas as pd

    now = datetime.now(timezone.utc)
    records = [{"run_id": r["run_id"], "task_type": r["task_type"], "target": r["target"],
                "age": now - r["started_at"], "phase": r["phase"],
                # an intent whose process died during create() is an unknown outcome too
                "unknown_outcome": bool(r["unknown_outcome"]) or r["phase"] == "CREATING",
                "started_at": r["started_at"], "message": r["message"]} for r in rows]
    return cast("pd.DataFrame", pd.DataFrame(records, columns=RECOVERY_COLUMNS))


def with_history(frame: pd.DataFrame, journal: JournalLike) -> pd.DataFrame:
    """``frame`` (runs in memory) plus the journal's runs that are no longer in memory, newest first."""
    import pandas as pd

    old = journal.frame()
    old = old[~old["run_id"].isin(frame["run_id"])]
    old = old.rename(columns={"started_at": "started"})
    old["duration_s"] = (old["ended_at"] - old["started"]).dt.total_seconds() if len(old) else []
    old["get_calls"] = None
    columns = list(frame.columns)
    merged = pd.concat([frame, old[[c for c in columns if c in old.columns]]], ignore_index=True)
    return cast("pd.DataFrame", merged.sort_values("started", ascending=False, kind="stable").reset_index(drop=True))
