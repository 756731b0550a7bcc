"""Helpers the example connectors share: output directories, paginated logs, Prometheus-style metrics."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable, Mapping, Sequence
from urllib.parse import unquote, urlparse

from ..errors import InputError

if TYPE_CHECKING:
    from flyteidl.admin import agent_pb2
    from flyteidl.core import metrics_pb2


#: Lines per log body message, so one huge page does not become one huge gRPC message.
_LOG_CHUNK = 500
#: Cap on points per metric series, like Prometheus' 11k limit.
MAX_POINTS = 10_000


def local_dir(output_prefix: str) -> Path:
    """The directory named by ``output_prefix`` (a path or file:// URI), created if missing."""
    parsed = urlparse(str(output_prefix))
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    elif parsed.scheme and len(parsed.scheme) > 1:  # len 1: a Windows drive letter, not a scheme
        raise InputError(f"output_prefix must be a local path or file:// URI, got {output_prefix!r}")
    else:
        path = Path(output_prefix)
    path = path.expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def custom_dict(task_template: Any) -> dict[str, Any]:
    """The template's ``custom`` Struct as a dict ({} when there is no template or no custom)."""
    from ..template import custom_dict as template_custom

    return {} if task_template is None else template_custom(task_template)


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


def read_lines(path: Path) -> list[str]:
    """A text file's lines ([] while it does not exist yet)."""
    try:
        return path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []


def elapsed_label(seconds: float) -> str:
    return f"[t={seconds:.2f}s]"


def page(lines: Sequence[str], token: str = "", limit: int = 0) -> tuple[list[str], str]:
    """Lines from offset ``token`` ("" = 0), at most ``limit`` (0 = all), and the token of the next page.

    The next token is always the next offset, even at the end, so a follower re-polling with it only
    receives lines written since.
    """
    try:
        start = max(int(token or 0), 0)
    except ValueError:
        raise InputError(f"log token must be a line offset (a non-negative integer), got {token!r}") from None
    end = len(lines) if not limit or limit <= 0 else min(len(lines), start + int(limit))
    chunk = list(lines[start:end])
    return chunk, str(start + len(chunk))


async def log_stream(
    lines: Sequence[str], token: str = "", limit: int = 0
) -> AsyncIterator[agent_pb2.GetTaskLogsResponse]:
    """A header carrying the next-page token, then the page's lines in bodies of at most ``_LOG_CHUNK``."""
    from flyteidl.admin import agent_pb2

    chunk, next_token = page(lines, token, limit)
    yield agent_pb2.GetTaskLogsResponse(header=agent_pb2.GetTaskLogsResponseHeader(token=next_token))
    for i in range(0, len(chunk), _LOG_CHUNK):
        body = agent_pb2.GetTaskLogsResponseBody(results=chunk[i : i + _LOG_CHUNK])
        yield agent_pb2.GetTaskLogsResponse(body=body)


def to_epoch(value: Any) -> float | None:
    """A datetime, protobuf Timestamp or number of seconds as Unix time; None when unset."""
    if value is None:
        return None
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return aware.timestamp()
    if hasattr(value, "seconds") and hasattr(value, "nanos"):  # google.protobuf.Timestamp
        return None if not (value.seconds or value.nanos) else value.seconds + value.nanos / 1e9
    return float(value) or None


def to_seconds(value: Any) -> float | None:
    """A timedelta, protobuf Duration or number as seconds; None when unset or not positive."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif hasattr(value, "seconds") and hasattr(value, "nanos"):  # google.protobuf.Duration
        seconds = value.seconds + value.nanos / 1e9
    else:
        seconds = float(value)
    return seconds if seconds > 0 else None


def downsample(points: Iterable[tuple[float, float]], kwargs: Mapping[str, Any]) -> list[tuple[float, float]]:
    """Points within ``start_time``/``end_time``, keeping the last one per ``step`` bucket when a step is given."""
    start, end = to_epoch(kwargs.get("start_time")), to_epoch(kwargs.get("end_time"))
    step = to_seconds(kwargs.get("step"))
    kept = [(t, v) for t, v in points if (start is None or t >= start) and (end is None or t <= end)]
    if step:
        buckets: dict[int, tuple[float, float]] = {}
        for t, v in kept:
            buckets[math.floor(t / step)] = (t, v)  # later points overwrite: last value per bucket
        kept = sorted(buckets.values())
    return kept[-MAX_POINTS:]


def wanted(name: str, kwargs: Mapping[str, Any]) -> bool:
    """Whether metric ``name`` was asked for (no ``queries`` means all of them)."""
    queries = kwargs.get("queries") or ()
    return not queries or name in queries


def _fmt(value: float) -> str:
    # Prometheus sends sample values as strings; keep integers (bytes, rows) exact.
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def metric_result(
    metric: str, labels: Mapping[str, str], points: Iterable[tuple[float, float]]
) -> metrics_pb2.ExecutionMetricResult:
    """One series as a Prometheus range-query result: ``{"result": [{"metric": labels, "values": [[t, "v"]]}]}``."""
    from flyteidl.core import metrics_pb2
    from google.protobuf import struct_pb2

    data = struct_pb2.Struct()
    values = [[round(t, 3), _fmt(v)] for t, v in points]
    data.update({"result": [{"metric": {k: str(v) for k, v in labels.items()}, "values": values}]})
    return metrics_pb2.ExecutionMetricResult(metric=metric, data=data)


def metrics_response(results: Iterable[metrics_pb2.ExecutionMetricResult]) -> agent_pb2.GetTaskMetricsResponse:
    from flyteidl.admin import agent_pb2

    return agent_pb2.GetTaskMetricsResponse(results=list(results))


def file_log_link(name: str, path: str | Path) -> dict[str, str]:
    return {"name": name, "uri": Path(path).as_uri()}
