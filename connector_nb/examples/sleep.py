"""SleepConnector: a job that only waits, with its whole state in the ResourceMeta.

Because ``get`` derives the phase from the start time in the metadata, the connector needs no job table
and works across processes (e.g. behind the gRPC server).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping

from ..connector import AsyncConnector, Resource, ResourceMeta
from ..errors import InputError
from ._common import (
    MAX_POINTS,
    elapsed_label,
    file_log_link,
    local_dir,
    log_stream,
    metric_result,
    metrics_response,
    new_job_id,
    to_epoch,
    to_seconds,
    wanted,
)

if TYPE_CHECKING:
    from flyteidl.admin import agent_pb2

#: job_id -> wall-clock time of ``delete``. Process-local: state otherwise lives in the metadata.
_CANCELLED: dict[str, float] = {}
_CANCELLED_LOCK = threading.Lock()
_TICK = 0.5
_METRIC_STEP = 0.25


@dataclass
class SleepMeta(ResourceMeta):
    job_id: str
    started_at: float
    seconds: float
    fail: bool = False
    #: Where create wrote the job's plan; the "sleep log" link points here.
    log_path: str = ""


def _queued_for(seconds: float) -> float:
    return min(0.1 * seconds, 0.5)


class SleepConnector(AsyncConnector):
    """Sleeps ``seconds``: QUEUED for the first 10% (max 0.5 s), then RUNNING, then SUCCEEDED (or FAILED)."""

    name = "Sleep Connector"
    task_type_name = "sleep"
    metadata_type = SleepMeta
    input_types = {"seconds": float, "fail": bool}
    input_defaults = {"fail": False}
    output_types = {"slept": float}

    def create(
        self, task_template: Any, output_prefix: str, inputs: dict[str, Any] | None = None,
        task_execution_metadata: Any = None, **kwargs: Any,
    ) -> SleepMeta:
        values = {**self.input_defaults, **(inputs or {})}
        seconds, fail = _check_inputs(values)
        job_id = new_job_id()
        log_path = local_dir(output_prefix) / f"sleep-{job_id}.log"
        started_at = time.time()
        stamp = datetime.fromtimestamp(started_at, timezone.utc).isoformat(timespec="milliseconds")
        log_path.write_text(f"sleep job {job_id}: {seconds:g} s, fail={fail}, started {stamp}\n")
        return SleepMeta(job_id=job_id, started_at=started_at, seconds=seconds, fail=fail, log_path=str(log_path))

    async def get(self, resource_meta: SleepMeta, **kwargs: Any) -> Resource:
        meta = resource_meta
        links = [file_log_link("sleep log", meta.log_path)] if meta.log_path else []
        now = time.time()
        elapsed = now - meta.started_at
        progress = round(_progress(meta, _until(meta, now)), 3)
        custom = {"job_id": meta.job_id, "elapsed": round(elapsed, 3), "progress": progress}
        if _cancelled_at(meta.job_id) is not None:
            return Resource("ABORTED", "cancelled by delete", links, custom_info=custom)
        if elapsed < _queued_for(meta.seconds):
            return Resource("QUEUED", f"queued: starts in {_queued_for(meta.seconds) - elapsed:.1f} s", links,
                            custom_info=custom)
        if elapsed < meta.seconds:
            return Resource("RUNNING", f"running: {elapsed:.1f} s of {meta.seconds:g} s", links, custom_info=custom)
        if meta.fail:
            return Resource("FAILED", "sleep failed as requested (fail=True)", links, custom_info=custom)
        return Resource("SUCCEEDED", f"slept {meta.seconds:g} s", links, {"slept": meta.seconds}, custom)

    def delete(self, resource_meta: SleepMeta, **kwargs: Any) -> None:
        # Idempotent: the first delete's time is kept, so logs stop at the same line every time. A job
        # that already finished stays finished.
        now = time.time()
        if now - resource_meta.started_at < resource_meta.seconds:
            with _CANCELLED_LOCK:
                _CANCELLED.setdefault(resource_meta.job_id, now)

    async def get_logs(self, resource_meta: SleepMeta, **kwargs: Any) -> AsyncIterator[agent_pb2.GetTaskLogsResponse]:
        lines = _log_lines(resource_meta, time.time())
        async for response in log_stream(lines, kwargs.get("token") or "", kwargs.get("lines") or 0):
            yield response

    async def get_metrics(self, resource_meta: SleepMeta, **kwargs: Any) -> agent_pb2.GetTaskMetricsResponse:
        meta = resource_meta
        if not wanted("progress", kwargs):
            return metrics_response([])
        until = _until(meta, time.time())
        step = max(to_seconds(kwargs.get("step")) or _METRIC_STEP, until / MAX_POINTS, 1e-3)
        offsets = [k * step for k in range(int(until / step) + 1)]
        if until - offsets[-1] > 1e-9 and until >= meta.seconds:
            offsets.append(until)  # end exactly on the finish, so a plot reaches 1.0
        points = [(meta.started_at + t, _progress(meta, t)) for t in offsets]
        start, end = to_epoch(kwargs.get("start_time")), to_epoch(kwargs.get("end_time"))
        points = [(t, v) for t, v in points if (start is None or t >= start) and (end is None or t <= end)]
        return metrics_response([metric_result("progress", {"job_id": meta.job_id}, points)])


def _check_inputs(values: Mapping[str, Any]) -> tuple[float, bool]:
    seconds, fail = values.get("seconds"), values.get("fail", False)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise InputError(f"sleep: input 'seconds' must be a number, got {seconds!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise InputError(f"sleep: input 'seconds' must be finite and >= 0, got {seconds!r}")
    if not isinstance(fail, bool):
        raise InputError(f"sleep: input 'fail' must be a bool, got {fail!r}")
    return float(seconds), fail


def _cancelled_at(job_id: str) -> float | None:
    with _CANCELLED_LOCK:
        return _CANCELLED.get(job_id)


def _until(meta: SleepMeta, now: float) -> float:
    """Seconds of the job that have happened: elapsed time, stopped by the end or by a delete."""
    cancelled_at = _cancelled_at(meta.job_id)
    stop = now if cancelled_at is None else min(now, cancelled_at)
    return max(0.0, min(stop - meta.started_at, meta.seconds))


def _progress(meta: SleepMeta, elapsed: float) -> float:
    return 1.0 if meta.seconds <= 0 else max(0.0, min(elapsed / meta.seconds, 1.0))


def _log_lines(meta: SleepMeta, now: float) -> list[str]:
    """The log as of ``now``: a pure function of the metadata and time, so pages are stable."""
    until = _until(meta, now)
    events: list[tuple[float, int, str]] = [(0.0, 0, f"queued: sleep {meta.seconds:g} s (fail={meta.fail})")]
    queued_for = _queued_for(meta.seconds)
    if until >= queued_for and (queued_for < meta.seconds or meta.seconds == 0):
        events.append((queued_for, 1, "running"))
    events += [(k * _TICK, 2, f"tick {k}") for k in range(1, int(until / _TICK + 1e-9) + 1)]
    if _cancelled_at(meta.job_id) is not None:
        events.append((until, 3, "cancelled by delete"))
    elif now - meta.started_at >= meta.seconds:
        end = "sleep failed as requested (fail=True)" if meta.fail else f"done: slept {meta.seconds:g} s"
        events.append((meta.seconds, 3, end))
    return [f"{elapsed_label(t)} {text}" for t, _, text in sorted(events)]


__all__ = ["SleepConnector", "SleepMeta"]
