"""Helpers for connector authors: confined output directories, a durable job store, paginated logs, metrics.

The example connectors are built from these. Everything here treats values that may come off the wire
(``output_prefix``, resource metadata, log tokens) as untrusted: paths cannot escape their base directory, job
records live in a per-user state directory, and one call's work is bounded.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable, Iterator, Mapping, Sequence, TypeVar
from urllib.parse import unquote, urlparse

from .connector import ResourceMeta
from .errors import InputError, MetadataError
from .secrets import mask

if TYPE_CHECKING:
    from flyteidl.admin import agent_pb2
    from flyteidl.core import metrics_pb2

#: Lines per log body message, so one huge page does not become one huge gRPC message.
LOG_CHUNK = 500
#: Most log lines one ``get_logs`` call returns, whatever ``lines`` asks for (follow the token for more).
MAX_LOG_LINES = 10_000
#: Cap on points per metric series, like Prometheus' 11k limit.
MAX_POINTS = 10_000
#: Longest log line kept, in characters (a binary blob in a log must not become one giant message).
MAX_LINE = 16_384
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_M = TypeVar("_M", bound=ResourceMeta)
_T = TypeVar("_T")


# ------------------------------------------------------------------------------------------- directories


def state_dir() -> Path:
    """The per-user state directory (0700): ``$CONNECTOR_NB_HOME``, else ``$XDG_STATE_HOME/connector_nb``,
    else ``~/.local/state/connector_nb``."""
    home = os.environ.get("CONNECTOR_NB_HOME")
    if home:
        path = Path(home).expanduser()
    else:
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        path = Path(base) / "connector_nb"
    return _private_dir(path)


def _private_dir(path: Path) -> Path:
    """``path``, created if missing, with mode 0700 (its parents keep their own modes)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def is_within(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is ``root`` or inside it, after resolving ``..`` and symlinks of both."""
    resolved, base = Path(path).expanduser().resolve(), Path(root).expanduser().resolve()
    return resolved == base or base in resolved.parents


def _prefix_path(output_prefix: str) -> Path:
    if not isinstance(output_prefix, (str, os.PathLike)) or not str(output_prefix):
        raise InputError(f"output_prefix must be a non-empty local path or file:// URI, got {output_prefix!r}")
    text = str(output_prefix)
    if "\x00" in text:
        raise InputError("output_prefix must not contain NUL characters")
    parsed = urlparse(text)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # len 1: a Windows drive letter, not a scheme
        raise InputError(f"output_prefix must be a local path or file:// URI, got {output_prefix!r}")
    return Path(text)


def safe_output_dir(
    output_prefix: str, base: str | os.PathLike[str] | None = None, *, reroot: bool = False
) -> Path:
    """The directory named by ``output_prefix`` (a path or file:// URI), created, never outside its base.

    ``..`` components are refused outright. With ``base`` (e.g. the root a served connector may write to) a
    relative prefix is taken under it and the resolved directory (symlinks followed) must stay inside it; an
    absolute prefix outside it is refused, or with ``reroot`` placed under it (``/tmp/x`` -> ``base/tmp/x``).
    """
    path = _prefix_path(output_prefix).expanduser()
    if ".." in path.parts:
        raise InputError(f"output_prefix must not contain '..', got {output_prefix!r}")
    if base is not None:
        root = Path(base).expanduser().resolve()
        if not path.is_absolute():
            path = root / path
        elif reroot and not is_within(path, root):
            path = root / path.relative_to(path.anchor)
        if not is_within(path, root):
            raise InputError(f"output_prefix {output_prefix!r} is outside the allowed output root {root}")
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_dir(output_prefix: str) -> Path:
    """The directory named by ``output_prefix``, created (same as ``safe_output_dir`` with no base)."""
    return safe_output_dir(output_prefix)


# ---------------------------------------------------------------------------------------------- job store


def new_job_id() -> str:
    """A fresh random job id (12 hex characters)."""
    return uuid.uuid4().hex[:12]


class JobStore:
    """Job records of one connector kind, as JSON files in the state directory, shared by every process.

    A connector writes the truth about a job here at ``create`` and checks forged metadata against it:
    ``load`` only finds jobs this machine created, and ``check`` refuses a meta whose fields differ.
    """

    #: Records untouched for this long (seconds) are removed, so the state directory does not grow forever.
    RETENTION = 60 * 24 * 3600.0

    def __init__(self, kind: str, root: str | os.PathLike[str] | None = None) -> None:
        if not _JOB_ID.match(kind):
            raise ValueError(f"job store kind must be a short name of letters, digits, _ or -, got {kind!r}")
        self.kind = kind
        self._root = Path(root) if root is not None else None
        self._pruned = False

    @property
    def directory(self) -> Path:
        """Where the records live (created 0700 on use; follows ``CONNECTOR_NB_HOME`` when no root was given)."""
        return _private_dir(_private_dir(self._root or state_dir() / "jobs") / self.kind)

    def _path(self, job_id: Any) -> Path:
        if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
            raise MetadataError(f"{self.kind}: job id must be 1-64 letters, digits, _ or -, got {job_id!r}")
        return self.directory / f"{job_id}.json"

    def save(self, job_id: str, record: Mapping[str, Any]) -> None:
        """Write (or replace) a job's record atomically, readable by this user only."""
        path = self._path(job_id)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(dict(record), f)
        os.replace(tmp, path)
        if not self._pruned:  # once per store and process: cheap, and enough to stay bounded
            self._pruned = True
            self.prune()

    def prune(self, older_than: float | None = None) -> int:
        """Remove records untouched for ``older_than`` seconds (default ``RETENTION``); returns how many."""
        cutoff = time.time() - (self.RETENTION if older_than is None else older_than)
        removed = 0
        for record in self.directory.glob("*.json"):
            try:
                if record.stat().st_mtime < cutoff:
                    record.unlink()
                    removed += 1
            except OSError:
                continue  # removed by another process meanwhile
        return removed

    def load(self, job_id: str) -> dict[str, Any]:
        """A job's record; a MetadataError when this machine has no such job (forged or foreign metadata)."""
        path = self._path(job_id)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise MetadataError(f"{self.kind}: no job {job_id!r} here (unknown or forged metadata)") from None
        except (OSError, ValueError) as e:
            raise MetadataError(f"{self.kind}: job {job_id!r} has an unreadable record: {e}") from None
        if not isinstance(record, dict):
            raise MetadataError(f"{self.kind}: job {job_id!r} has a malformed record")
        return record

    def update(self, job_id: str, **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` into a job's record (first writer wins for keys already set) and return it."""
        record = self.load(job_id)
        fresh = {k: v for k, v in changes.items() if record.get(k) is None}
        if fresh:
            record.update(fresh)
            self.save(job_id, record)
        return record

    def check(self, job_id: str, meta_fields: Mapping[str, Any]) -> dict[str, Any]:
        """The job's record, after checking that every given metadata field equals the recorded one."""
        record = self.load(job_id)
        for name, value in meta_fields.items():
            if record.get(name) != value:
                raise MetadataError(
                    f"{self.kind}: metadata field {name!r} does not match job {job_id!r} (forged metadata?)"
                )
        return record


def expect_meta(meta: ResourceMeta, cls: type[_M]) -> _M:
    """``meta`` as the connector's own metadata type; any other object is a MetadataError."""
    if not isinstance(meta, cls):
        raise MetadataError(f"expected {cls.__name__} metadata, got {type(meta).__name__}")
    return meta


# ----------------------------------------------------------------------------------------------- logs


def elapsed_label(seconds: float) -> str:
    """``[t=1.50s]``: the prefix of a log line written ``seconds`` into a job."""
    return f"[t={seconds:.2f}s]"


def _page_bounds(token: Any, limit: Any) -> tuple[int, int]:
    """(start, count) for a log page: the token is a line offset; the count is capped at ``MAX_LOG_LINES``."""
    try:
        start = int(token or 0)
    except (TypeError, ValueError):
        raise InputError(f"log token must be a line offset (a non-negative integer), got {str(token)[:40]!r}") \
            from None
    if start < 0:
        raise InputError(f"log token must be a non-negative line offset, got {start}")
    try:
        count = int(limit or 0)
    except (TypeError, ValueError):
        raise InputError(f"log lines must be an integer, got {str(limit)[:40]!r}") from None
    return start, MAX_LOG_LINES if count <= 0 else min(count, MAX_LOG_LINES)


def page(lines: Sequence[_T], token: str = "", limit: int = 0) -> tuple[list[_T], str]:
    """Lines from offset ``token`` ("" = 0), at most ``limit`` (0 = up to ``MAX_LOG_LINES``), and the next token.

    The next token is always the next offset, even at the end, so a follower re-polling with it only
    receives lines written since.
    """
    start, count = _page_bounds(token, limit)
    chunk = list(lines[start : start + count])
    return chunk, str(start + len(chunk))


def read_lines(path: Path) -> list[str]:
    """A text file's lines ([] while it does not exist yet)."""
    try:
        return path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []


def read_samples(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL metrics file, one per line; a line being written (or garbled) is skipped."""
    samples = []
    for line in read_lines(path):
        try:
            sample = json.loads(line)
        except ValueError:
            continue
        if isinstance(sample, dict):
            samples.append(sample)
    return samples


def read_page(path: Path, token: str = "", limit: int = 0) -> tuple[list[str], str]:
    """Like ``page`` for a file, streamed: a huge log is never read into memory whole."""
    start, count = _page_bounds(token, limit)
    chunk: list[str] = []
    try:
        with open(path, errors="replace") as f:
            for i, line in enumerate(_bounded_lines(f)):
                if i >= start + count:
                    break
                if i >= start:
                    chunk.append(line)
    except FileNotFoundError:
        pass
    return chunk, str(start + len(chunk))


def _bounded_lines(f: Any) -> Iterator[str]:
    """A text file's lines, each cut at ``MAX_LINE`` characters; never holds more than that in memory at once."""
    while line := f.readline(MAX_LINE):
        if not line.endswith("\n"):
            while (rest := f.readline(MAX_LINE)) and not rest.endswith("\n"):
                pass  # the rest of an over-long line is dropped, read in bounded pieces
        yield line.rstrip("\r\n")


async def log_stream(
    lines: Sequence[str], token: str = "", limit: int = 0, *, next_token: str | None = None
) -> AsyncIterator[agent_pb2.GetTaskLogsResponse]:
    """A header with the next-page token, then the lines (secrets masked) in bodies of at most ``LOG_CHUNK``.

    Without ``next_token`` the lines are the whole log and are paged here; with it they are one page already.
    """
    from flyteidl.admin import agent_pb2

    chunk, next_token = (list(lines), next_token) if next_token is not None else page(lines, token, limit)
    yield agent_pb2.GetTaskLogsResponse(header=agent_pb2.GetTaskLogsResponseHeader(token=next_token))
    for i in range(0, len(chunk), LOG_CHUNK):
        body = agent_pb2.GetTaskLogsResponseBody(results=[mask(line) for line in chunk[i : i + LOG_CHUNK]])
        yield agent_pb2.GetTaskLogsResponse(body=body)


def file_log_link(name: str, path: str | Path) -> dict[str, str]:
    """A log link (``{"name", "uri"}``) to a local file."""
    return {"name": name, "uri": Path(path).as_uri()}


# -------------------------------------------------------------------------------------------- metrics


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
    """A timedelta, protobuf Duration or number as seconds; None when unset, not positive or not finite."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif hasattr(value, "seconds") and hasattr(value, "nanos"):  # google.protobuf.Duration
        seconds = value.seconds + value.nanos / 1e9
    else:
        seconds = float(value)
    return seconds if seconds > 0 and math.isfinite(seconds) else None


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
    values: list[Any] = [[round(t, 3), _fmt(v)] for t, v in points]
    data.update({"result": [{"metric": {k: str(v) for k, v in labels.items()}, "values": values}]})
    return metrics_pb2.ExecutionMetricResult(metric=metric, data=data)


def metrics_response(results: Iterable[metrics_pb2.ExecutionMetricResult]) -> agent_pb2.GetTaskMetricsResponse:
    """A GetTaskMetricsResponse holding ``results``."""
    from flyteidl.admin import agent_pb2

    return agent_pb2.GetTaskMetricsResponse(results=list(results))


def custom_dict(task_template: Any) -> dict[str, Any]:
    """The template's ``custom`` Struct as a dict ({} when there is no template or no custom)."""
    from .template import custom_dict as template_custom

    return {} if task_template is None else template_custom(task_template)


__all__ = [
    "LOG_CHUNK", "MAX_LOG_LINES", "MAX_POINTS", "JobStore", "custom_dict", "downsample", "elapsed_label", "expect_meta",
    "file_log_link", "is_within", "local_dir", "log_stream", "metric_result", "metrics_response", "new_job_id",
    "page", "read_lines", "read_page", "read_samples", "safe_output_dir", "state_dir", "to_epoch", "to_seconds",
    "wanted",
]
