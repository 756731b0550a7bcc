"""SleepConnector: a job that only waits, behaving like an external system.

The job's record (start, length, cancellation) lives in a ``JobStore`` in the per-user state directory, so
every process on the machine (a restarted kernel, the gRPC server) sees the same job, a cancelled one
included; metadata that does not match a record is refused.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping, NamedTuple

from ..connector import AsyncConnector, Resource, ResourceMeta
from ..errors import InputError
from ..helpers import (
    MAX_POINTS,
    JobStore,
    elapsed_label,
    expect_meta,
    file_log_link,
    log_stream,
    metric_result,
    metrics_response,
    new_job_id,
    page,
    safe_output_dir,
    to_epoch,
    to_seconds,
    wanted,
)

if TYPE_CHECKING:
    from flyteidl.admin import agent_pb2

_TICK = 0.5
_METRIC_STEP = 0.25
#: Longest sleep accepted (30 days): keeps every derived figure (ticks, samples) in a sane range.
MAX_SECONDS = 30 * 24 * 3600.0


@dataclass
class SleepMeta(ResourceMeta):
    job_id: str
    started_at: float
    seconds: float
    fail: bool = False
    #: Where create wrote the job's plan; the "sleep log" link points here.
    log_path: str = ""


class _Job(NamedTuple):
    job_id: str
    started_at: float
    seconds: float
    fail: bool
    log_path: str
    cancelled_at: float | None


def _queued_for(seconds: float) -> float:
    return min(0.1 * seconds, 0.5)


class SleepConnector(AsyncConnector[SleepMeta]):
    """Sleeps ``seconds``: QUEUED for the first 10% (max 0.5 s), then RUNNING, then SUCCEEDED (or FAILED).

    ``output_root`` (default: ``$CONNECTOR_NB_OUTPUT_ROOT``) confines where ``output_prefix`` may point.
    """

    name = "Sleep Connector"
    task_type_name = "sleep"
    metadata_type = SleepMeta
    input_types = {"seconds": float, "fail": bool}
    input_defaults = {"fail": False}
    output_types = {"slept": float}

    def __init__(self, output_root: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output_root = output_root or os.environ.get("CONNECTOR_NB_OUTPUT_ROOT") or None
        self.jobs = JobStore("sleep")

    def create(
        self, task_template: Any, output_prefix: str, inputs: dict[str, Any] | None = None,
        task_execution_metadata: Any = None, **kwargs: Any,
    ) -> SleepMeta:
        values = {**self.input_defaults, **(inputs or {})}
        seconds, fail = _check_inputs(values)
        job_id = new_job_id()
        log_path = safe_output_dir(output_prefix, self.output_root, reroot=True) / f"sleep-{job_id}.log"
        started_at = time.time()
        stamp = datetime.fromtimestamp(started_at, timezone.utc).isoformat(timespec="milliseconds")
        log_path.write_text(f"sleep job {job_id}: {seconds:g} s, fail={fail}, started {stamp}\n")
        meta = SleepMeta(job_id=job_id, started_at=started_at, seconds=seconds, fail=fail, log_path=str(log_path))
        self.jobs.save(job_id, {**vars(meta), "cancelled_at": None})
        return meta

    def _job(self, resource_meta: ResourceMeta) -> _Job:
        """The recorded job behind ``meta``; forged or foreign metadata is a MetadataError."""
        meta = expect_meta(resource_meta, SleepMeta)
        fields = {"started_at": meta.started_at, "seconds": meta.seconds, "fail": meta.fail, "log_path": meta.log_path}
        record = self.jobs.check(meta.job_id, fields)
        return _Job(meta.job_id, meta.started_at, meta.seconds, meta.fail, meta.log_path, record.get("cancelled_at"))

    async def get(self, resource_meta: SleepMeta, **kwargs: Any) -> Resource:
        job = self._job(resource_meta)
        links = [file_log_link("sleep log", job.log_path)] if job.log_path else []
        now = time.time()
        elapsed = now - job.started_at
        progress = round(_progress(job, _until(job, now)), 3)
        custom = {"job_id": job.job_id, "elapsed": round(elapsed, 3), "progress": progress}
        if job.cancelled_at is not None:
            return Resource("ABORTED", "cancelled by delete", links, custom_info=custom)
        if elapsed < _queued_for(job.seconds):
            return Resource("QUEUED", f"queued: starts in {_queued_for(job.seconds) - elapsed:.1f} s", links,
                            custom_info=custom)
        if elapsed < job.seconds:
            return Resource("RUNNING", f"running: {elapsed:.1f} s of {job.seconds:g} s", links, custom_info=custom)
        if job.fail:
            return Resource("FAILED", "sleep failed as requested (fail=True)", links, custom_info=custom)
        return Resource("SUCCEEDED", f"slept {job.seconds:g} s", links, {"slept": job.seconds}, custom)

    def delete(self, resource_meta: ResourceMeta, **kwargs: Any) -> None:
        # Idempotent: the first delete's time is kept (on disk, for every process), so logs stop at the same
        # line every time. A job that already finished stays finished.
        job = self._job(resource_meta)
        now = time.time()
        if now - job.started_at < job.seconds:
            self.jobs.update(job.job_id, cancelled_at=now)

    async def get_logs(
        self, resource_meta: ResourceMeta, **kwargs: Any
    ) -> AsyncIterator[agent_pb2.GetTaskLogsResponse]:
        lines, next_token = _log_page(self._job(resource_meta), time.time(), kwargs.get("token") or "",
                                      kwargs.get("lines") or 0)
        async for response in log_stream(lines, next_token=next_token):
            yield response

    async def get_metrics(
        self, resource_meta: ResourceMeta, **kwargs: Any
    ) -> agent_pb2.GetTaskMetricsResponse:
        job = self._job(resource_meta)
        if not wanted("progress", kwargs):
            return metrics_response([])
        until = _until(job, time.time())
        step = max(to_seconds(kwargs.get("step")) or _METRIC_STEP, until / MAX_POINTS, 1e-3)
        offsets = [k * step for k in range(int(until / step) + 1)]
        if until - offsets[-1] > 1e-9 and until >= job.seconds:
            offsets.append(until)  # end exactly on the finish, so a plot reaches 1.0
        points = [(job.started_at + t, _progress(job, t)) for t in offsets]
        start, end = to_epoch(kwargs.get("start_time")), to_epoch(kwargs.get("end_time"))
        points = [(t, v) for t, v in points if (start is None or t >= start) and (end is None or t <= end)]
        return metrics_response([metric_result("progress", {"job_id": job.job_id}, points)])


def _check_inputs(values: Mapping[str, Any]) -> tuple[float, bool]:
    seconds, fail = values.get("seconds"), values.get("fail", False)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise InputError(f"sleep: input 'seconds' must be a number, got {seconds!r}")
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS:
        raise InputError(f"sleep: input 'seconds' must be between 0 and {MAX_SECONDS:g}, got {seconds!r}")
    if not isinstance(fail, bool):
        raise InputError(f"sleep: input 'fail' must be a bool, got {fail!r}")
    return float(seconds), fail


def _until(job: _Job, now: float) -> float:
    """Seconds of the job that have happened: elapsed time, stopped by the end or by a delete."""
    stop = now if job.cancelled_at is None else min(now, job.cancelled_at)
    return max(0.0, min(stop - job.started_at, job.seconds))


def _progress(job: _Job, elapsed: float) -> float:
    return 1.0 if job.seconds <= 0 else max(0.0, min(elapsed / job.seconds, 1.0))


def _log_page(job: _Job, now: float, token: str, limit: int) -> tuple[list[str], str]:
    """One page of the log as of ``now``: a pure function of the job and time, so pages are stable.

    The log is [queued, running?, tick 1..n, end?]; only the requested lines are built, so a forged or huge
    job never makes one call build millions of lines.
    """
    until = _until(job, now)
    head = [(0.0, f"queued: sleep {job.seconds:g} s (fail={job.fail})")]
    queued_for = _queued_for(job.seconds)
    if until >= queued_for and (queued_for < job.seconds or job.seconds == 0):
        head.append((queued_for, "running"))
    ticks = int(until / _TICK + 1e-9)
    tail = []
    if job.cancelled_at is not None:
        tail.append((until, "cancelled by delete"))
    elif now - job.started_at >= job.seconds:
        end = "sleep failed as requested (fail=True)" if job.fail else f"done: slept {job.seconds:g} s"
        tail.append((job.seconds, end))
    total = len(head) + ticks + len(tail)
    indices, next_token = page(range(total), token, limit)

    def line(i: int) -> str:
        if i < len(head):
            t, text = head[i]
        elif i < len(head) + ticks:
            k = i - len(head) + 1
            t, text = k * _TICK, f"tick {k}"
        else:
            t, text = tail[i - len(head) - ticks]
        return f"{elapsed_label(t)} {text}"

    return [line(int(i)) for i in indices], next_token


__all__ = ["SleepConnector", "SleepMeta", "MAX_SECONDS"]
