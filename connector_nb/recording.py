"""Recordings of connector calls (``.cnbrec``, versioned JSON lines) and ``ReplayConnector``, which plays them back.

Format, version 1: UTF-8 JSON, one object per line, never pickle.

- Line 1, the header: ``{"format": "connector-nb-recording", "version": 1, "created": ISO time, "target": ...}``.
- Then one line per connector call: ``seq``, ``method`` (create, get, delete, get_metrics, get_logs),
  ``task_type``, ``task_type_version``, ``at`` (seconds since the recording began), ``duration``, ``job``
  (the job's resource metadata as text), ``request``, and ``response`` or ``error`` (``{"type", "message"}``).
  Protobuf messages are stored in protobuf's JSON form: ``create`` keeps the template and the inputs
  LiteralMap, ``get`` a flyteidl ``Resource``, ``get_logs`` the list of streamed responses.
- Small local files a ``get`` names as outputs (structured datasets, blobs) are embedded under
  ``attachments`` and their URIs rewritten to ``attachment:NAME``, so a recording replays offline.

Secrets are masked (by name and by remembered value, see :mod:`connector_nb.secrets`) before a line is
written, so a recording is safe to commit. Replay compares requests in the same masked form.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping

from .connector import AsyncConnector, Resource, ResourceMeta
from .errors import ConnectorNbError, MetadataError
from .secrets import MASK, is_secret_name, mask, mask_obj, remember

if TYPE_CHECKING:
    from flyteidl.admin import agent_pb2
    from flyteidl.core import tasks_pb2

    from .transports.base import TaskCategory

FORMAT = "connector-nb-recording"
VERSION = 1
#: Largest output file embedded in a recording; bigger ones keep their URI.
MAX_ATTACHMENT = 1024 * 1024
#: Longest line a reader accepts.
MAX_LINE = 16 * 1024 * 1024
METHODS = ("create", "get", "delete", "get_metrics", "get_logs")


class RecordingError(ConnectorNbError, ValueError):
    """A recording file cannot be used: not a connector-nb recording, a newer format version, or a bad line."""


class ReplayMismatchError(RecordingError):
    """A replayed request differs from the recorded one; the message names the first difference."""


def message_dict(message: Any) -> dict[str, Any]:
    """A protobuf message in protobuf's JSON form (field names as in the .proto)."""
    from google.protobuf import json_format

    found: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return found


def job_text(meta: bytes) -> str:
    """Resource metadata as text: our metadata is JSON; anything else is kept as ``b64:...``."""
    try:
        return meta.decode("utf-8")
    except UnicodeDecodeError:
        return "b64:" + base64.b64encode(meta).decode()


def job_bytes(text: str) -> bytes:
    """The inverse of :func:`job_text`."""
    return base64.b64decode(text[4:]) if text.startswith("b64:") else text.encode("utf-8")


def resource_dict(resource: Resource, template: tasks_pb2.TaskTemplate | None) -> dict[str, Any]:
    """A Resource as flyteidl's Resource in JSON form; dict outputs become literals of the template's types."""
    from .template import interface_types

    output_types = interface_types(template)[1] if template is not None else None
    return message_dict(resource.to_flyte_idl(output_types))


def _mask_values(obj: Any, depth: int = 0) -> Any:
    """Every string in ``obj`` masked by value (remembered secrets, URL passwords); keys and structure kept."""
    if depth > 64:
        return MASK
    if isinstance(obj, str):
        return mask(obj)
    if isinstance(obj, dict):
        return {k: _mask_values(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_mask_values(v, depth + 1) for v in obj]
    return obj


def masked_create_request(template: Any, inputs: Any) -> dict[str, Any]:
    """The create request in JSON form with secret-named inputs and custom entries masked (and remembered)."""
    from .template import custom_dict

    template_dict = message_dict(template)
    if template.HasField("custom"):
        template_dict["custom"] = mask_obj(custom_dict(template))
    literals = message_dict(inputs).get("literals", {})
    for name, literal in literals.items():
        if is_secret_name(name):
            remember(*_strings(literal))
            literals[name] = {"scalar": {"primitive": {"string_value": MASK}}}
    return {"template": template_dict, "inputs": {"literals": literals}}


def _strings(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return [str(obj)] if isinstance(obj, (str, int, float)) and not isinstance(obj, bool) else []


def _attach(response: dict[str, Any]) -> dict[str, Any]:
    """Embed small local output files of a get response, rewriting their URIs to ``attachment:NAME``."""
    attachments: dict[str, Any] = {}
    for literal in response.get("outputs", {}).get("literals", {}).values():
        scalar = literal.get("scalar", {})
        for kind in ("structured_dataset", "blob"):
            item = scalar.get(kind)
            if not item or "uri" not in item:
                continue
            path = Path(item["uri"][7:] if item["uri"].startswith("file://") else item["uri"])
            if path.is_file() and path.stat().st_size <= MAX_ATTACHMENT:
                data = path.read_bytes()
                try:
                    attachments[path.name] = {"text": mask(data.decode("utf-8"))}
                except UnicodeDecodeError:
                    attachments[path.name] = {"b64": base64.b64encode(data).decode()}
                item["uri"] = f"attachment:{path.name}"
    return attachments


class RecordingWriter:
    """Appends call lines to a recording file (writing the header first when the file is new)."""

    def __init__(self, path: str | os.PathLike[str], target: str = "") -> None:
        self.path = Path(path)
        self._start = time.monotonic()
        self._seq = 0
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        if not fresh:
            read_header(self.path)  # appending to something else would corrupt it
        try:
            self._file = open(self.path, "a", encoding="utf-8")  # held open for the session
        except OSError as e:
            raise RecordingError(f"cannot write recording {self.path}: {e.strerror or e}") from None
        if fresh:
            created = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self._line({"format": FORMAT, "version": VERSION, "created": created, "target": mask(target)})

    def _line(self, entry: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(entry, separators=(",", ":"), allow_nan=False) + "\n")
        self._file.flush()  # a kernel that dies keeps every call recorded so far

    def write(
        self, method: str, category: TaskCategory, started: float, request: dict[str, Any], *,
        job: bytes | None = None, response: Any = None, error: BaseException | None = None,
        category_template: Any = None,
    ) -> None:
        """Record one call that began at ``started`` (``time.monotonic``) and ends now."""
        if self._file.closed:
            return
        now = time.monotonic()
        self._seq += 1
        entry: dict[str, Any] = {
            "seq": self._seq, "method": method, "task_type": category.name, "task_type_version": category.version,
            "at": round(started - self._start, 4), "duration": round(now - started, 4),
            "job": job_text(job) if job else None, "request": request,
        }
        if error is not None:
            entry["error"] = {"type": type(error).__name__, "message": str(error)}
        else:
            entry["response"] = response
        masked: dict[str, Any] = _mask_values(entry)
        if method == "get" and isinstance(masked.get("response"), dict):
            masked["attachments"] = _attach(masked["response"])
        self._line(masked)

    def close(self) -> None:
        """Close the file."""
        self._file.close()


# ----------------------------------------------------------------------------------------------- reading


def read_header(path: Path) -> dict[str, Any]:
    """The header of a recording; RecordingError when it is not one this version can read."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline(MAX_LINE)
    except (OSError, UnicodeDecodeError) as e:
        raise RecordingError(f"cannot read recording {path.name}: {e}") from None
    return _header(first, path)


def _header(first: str, path: Path) -> dict[str, Any]:
    try:
        header = json.loads(first)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise RecordingError(f"{path.name}: not a connector-nb recording (its first line has no "
                             f"\"format\": \"{FORMAT}\")")
    if header.get("version") != VERSION:
        raise RecordingError(f"{path.name}: recording format version {header.get('version')!r}; this "
                             f"connector_nb reads version {VERSION}")
    return header


@dataclass
class Recording:
    """A loaded recording: its header and its call entries, in order."""

    header: dict[str, Any]
    entries: list[dict[str, Any]]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Recording:
        """Read and validate a recording file."""
        from ._args import loads_json

        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise RecordingError(f"cannot read recording {path.name}: {e}") from None
        header = _header(lines[0] if lines else "", path)
        entries = []
        for number, line in enumerate(lines[1:], start=2):
            entry = loads_json(line, f"{path.name} line {number}", RecordingError)
            if not isinstance(entry, dict) or entry.get("method") not in METHODS:
                raise RecordingError(f"{path.name} line {number}: expected a call with a method in "
                                     f"{', '.join(METHODS)}")
            entries.append(entry)
        return cls(header, entries)

    def creates(self) -> list[dict[str, Any]]:
        """The recorded ``create`` calls that succeeded."""
        return [e for e in self.entries if e["method"] == "create" and "response" in e]

    def calls(self, job: str, method: str) -> list[dict[str, Any]]:
        """The calls of ``method`` on ``job``, in order."""
        return [e for e in self.entries if e["method"] == method and e.get("job") == job]


def first_difference(recorded: Any, live: Any, path: str) -> str | None:
    """A description of the first place where ``live`` differs from ``recorded`` (None when equal)."""
    if isinstance(recorded, dict) and isinstance(live, dict):
        for key in sorted(set(recorded) | set(live)):
            if key not in live:
                return f"{path}.{key}: recorded {recorded[key]!r}, missing now"
            if key not in recorded:
                return f"{path}.{key}: not in the recording, now {live[key]!r}"
            found = first_difference(recorded[key], live[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(recorded, list) and isinstance(live, list) and len(recorded) == len(live):
        for i, (a, b) in enumerate(zip(recorded, live)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if recorded == live else f"{path}: recorded {recorded!r}, now {live!r}"


# ----------------------------------------------------------------------------------------------- replay


@dataclass
class ReplayMeta(ResourceMeta):
    """A replayed job: the recorded job it plays, and when the replay began."""

    job: str
    started_at: float
    replay_id: str = ""


def _normal(value: Any) -> Any:
    """A JSON-comparable form of Python values (datasets and blobs by their URI, dates as text)."""
    return json.loads(json.dumps(value, default=lambda v: getattr(v, "uri", None) or str(v)))


def _execution_name(metadata: Any) -> str:
    """The execution name in a TaskExecutionMetadata ("" when there is none)."""
    if metadata is None:
        return ""
    return str(metadata.task_execution_id.node_execution_id.execution_id.name)


class ReplayConnector(AsyncConnector[ReplayMeta]):
    """Plays a recording back as a connector: the recorded phases, logs, metrics and outputs, at the recorded
    pace (``speed=10`` plays ten times faster). A create whose template or inputs differ from every recorded
    one raises :class:`ReplayMismatchError` naming the first difference."""

    name = "Replay"
    metadata_type = ReplayMeta

    def __init__(self, path: str | os.PathLike[str], speed: float = 1.0) -> None:
        """Load ``path``; ``speed`` > 0 scales time (2.0 plays twice as fast)."""
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0 < speed < float("inf"):
            raise ValueError(f"speed must be a positive number, got {speed!r}")
        self.recording = Recording.load(path)
        creates = self.recording.creates()
        if not creates:
            raise RecordingError(f"{Path(path).name}: the recording has no successful create to replay")
        first = creates[0]
        super().__init__(task_type_name=first["task_type"], task_type_version=int(first["task_type_version"]))
        self.name = f"Replay of {first['task_type']}"  # type: ignore[misc]
        self.speed = float(speed)
        self._creates = [c for c in creates if c["task_type"] == first["task_type"]]
        self._cancelled: dict[str, float] = {}
        self._folders: dict[str, Path] = {}
        self._by_execution: dict[str, ReplayMeta] = {}
        self._count = 0

    def task_template(self, custom: Mapping[str, Any] | None = None, name: str | None = None) -> tasks_pb2.TaskTemplate:
        """The recorded template (its interface), with ``custom`` replaced when given."""
        from flyteidl.core import tasks_pb2
        from google.protobuf import json_format

        from .template import with_custom

        template = json_format.ParseDict(self._creates[0]["request"]["template"], tasks_pb2.TaskTemplate())
        return with_custom(template, custom)

    def recorded_inputs(self, index: int = 0) -> dict[str, Any]:
        """The inputs of the ``index``-th recorded create (masked secrets stay masked: replay matches any value)."""
        from flyteidl.core import literals_pb2
        from google.protobuf import json_format

        from .literals import to_python_dict

        if isinstance(index, bool) or not isinstance(index, int) or not -len(self._creates) <= index < len(
                self._creates):
            raise ValueError(f"index: expected an int below {len(self._creates)} (the recorded creates), got {index!r}")
        literals = json_format.ParseDict(self._creates[index]["request"].get("inputs", {}), literals_pb2.LiteralMap())
        return dict(sorted(to_python_dict(literals).items()))  # protobuf maps keep no order: sort, for stable output

    def _live_request(self, task_template: Any, inputs: Mapping[str, Any] | None) -> dict[str, Any]:
        from .template import custom_dict

        live: dict[str, Any] = mask_obj({"custom": _normal(custom_dict(task_template)),
                                         "inputs": _normal(dict(inputs or {}))})
        return live

    def _recorded_request(self, entry: dict[str, Any]) -> dict[str, Any]:
        from flyteidl.core import literals_pb2, tasks_pb2
        from google.protobuf import json_format

        from .literals import to_python_dict
        from .template import custom_dict

        template = json_format.ParseDict(entry["request"]["template"], tasks_pb2.TaskTemplate())
        literals = json_format.ParseDict(entry["request"].get("inputs", {}), literals_pb2.LiteralMap())
        return {"custom": _normal(custom_dict(template)), "inputs": _normal(to_python_dict(literals))}

    async def create(self, task_template: Any, output_prefix: str, inputs: dict[str, Any] | None = None,
                     **kwargs: Any) -> ReplayMeta:
        """The recorded job whose request matches; ReplayMismatchError names the first difference."""
        live = self._live_request(task_template, inputs)
        match = next((c for c in self._creates if self._recorded_request(c) == live), None)
        if match is None:
            difference = first_difference(self._recorded_request(self._creates[0]), live, "create")
            raise ReplayMismatchError(f"request differs from the recording: {difference}")
        execution = _execution_name(kwargs.get("task_execution_metadata"))
        if execution and execution in self._by_execution:
            return self._by_execution[execution]  # a retried create is the same replayed job
        await asyncio.sleep(min(float(match.get("duration", 0)) / self.speed, 5.0))
        self._count += 1
        meta = ReplayMeta(job=match["response"]["job"], started_at=time.time(), replay_id=str(self._count))
        if execution:
            self._by_execution[execution] = meta
        return meta

    def _elapsed(self, meta: ReplayMeta) -> float:
        """Recorded seconds since the job's create returned, at this replay's speed."""
        return (time.time() - meta.started_at) * self.speed

    def _at(self, meta: ReplayMeta, entries: list[dict[str, Any]], early: bool = True) -> dict[str, Any] | None:
        """The last entry recorded by now (relative to the job's create); before any, the first one if ``early``.

        Once the replayed job has finished, its last entry: the final logs and metrics, whenever they were read.
        """
        create = self._create_of(meta)
        if not entries:
            return None
        origin, now = float(create["at"]) + float(create["duration"]), self._elapsed(meta)
        gets = self.recording.calls(meta.job, "get")
        if gets and self._due(gets, origin, now)[-1:] == gets[-1:]:
            return entries[-1]
        due = self._due(entries, origin, now)
        return due[-1] if due else entries[0] if early else None

    def _create_of(self, meta: ReplayMeta) -> dict[str, Any]:
        """The recorded create of a replayed job; metadata naming no recorded job is a MetadataError."""
        for create in self._creates:
            if create["response"]["job"] == meta.job:
                return create
        raise MetadataError(f"ReplayMeta names job {meta.job[:80]!r}, which is not in the recording")

    @staticmethod
    def _due(entries: list[dict[str, Any]], origin: float, now: float) -> list[dict[str, Any]]:
        return [e for e in entries if float(e["at"]) + float(e["duration"]) - origin <= now]

    @staticmethod
    def _raise_recorded(entry: dict[str, Any]) -> None:
        if "error" in entry:
            error = entry["error"]
            raise RuntimeError(f"(recorded) {error.get('type')}: {error.get('message')}")

    async def get(self, resource_meta: ReplayMeta, **kwargs: Any) -> Resource:
        """The state the recorded job was in at this point of its life."""
        from flyteidl.admin import agent_pb2
        from google.protobuf import json_format

        entry = self._at(resource_meta, self.recording.calls(resource_meta.job, "get"))
        if entry is None:
            raise ReplayMismatchError(f"the recording has no get for job {resource_meta.job!r}")
        self._raise_recorded(entry)
        pb = json_format.ParseDict(entry["response"], agent_pb2.Resource())
        resource = Resource.from_flyte_idl(pb)
        if resource_meta.replay_id in self._cancelled and not resource.is_final:
            return Resource("ABORTED", "cancelled by delete (replay)", resource.log_links)
        if resource.outputs is not None and entry.get("attachments"):
            self._materialise(resource.outputs, entry["attachments"], self._folder(resource_meta))
        return resource

    def _folder(self, meta: ReplayMeta) -> Path:
        """One scratch folder per replayed job, for its embedded output files."""
        import tempfile

        key = f"{meta.replay_id}:{meta.started_at}"
        if key not in self._folders:
            self._folders[key] = Path(tempfile.mkdtemp(prefix="connector-nb-replay-"))
        return self._folders[key]

    @staticmethod
    def _materialise(outputs: Any, attachments: dict[str, Any], folder: Path) -> None:
        """Write embedded files to ``folder`` and point the outputs' URIs at them."""
        for literal in outputs.literals.values():
            scalar = literal.scalar
            for item in (scalar.structured_dataset, scalar.blob):
                if item.uri.startswith("attachment:"):
                    name = Path(item.uri[len("attachment:"):]).name
                    if name in ("", ".", ".."):
                        raise RecordingError(f"attachment name {item.uri!r} is not a file name")
                    data = attachments.get(name, {})
                    body = data["text"].encode() if "text" in data else base64.b64decode(data.get("b64", ""))
                    (folder / name).write_bytes(body)
                    item.uri = str(folder / name)

    async def delete(self, resource_meta: ReplayMeta, **kwargs: Any) -> None:
        """Cancel the replayed job (idempotent): later gets say ABORTED unless the recording had finished."""
        self._cancelled.setdefault(resource_meta.replay_id, time.time())

    async def get_metrics(self, resource_meta: ReplayMeta, **kwargs: Any) -> agent_pb2.GetTaskMetricsResponse:
        """The metrics recorded by this point of the job's life."""
        from flyteidl.admin import agent_pb2
        from google.protobuf import json_format

        calls = self.recording.calls(resource_meta.job, "get_metrics")
        if not calls:
            raise NotImplementedError("the recording has no metrics")
        entry = self._at(resource_meta, calls, early=False)
        if entry is None:  # nothing measured yet at this point of the recording
            return agent_pb2.GetTaskMetricsResponse()
        self._raise_recorded(entry)
        return json_format.ParseDict(entry["response"], agent_pb2.GetTaskMetricsResponse())

    async def get_logs(self, resource_meta: ReplayMeta, token: str = "", **kwargs: Any) -> AsyncIterator[Any]:
        """The log page recorded for ``token`` by this point of the job's life."""
        from flyteidl.admin import agent_pb2
        from google.protobuf import json_format

        calls = self.recording.calls(resource_meta.job, "get_logs")
        if not calls:
            raise NotImplementedError("the recording has no logs")
        pages = [c for c in calls if c["request"].get("token", "") == (token or "")]
        if not pages:
            known = sorted({c["request"].get("token", "") for c in calls})
            raise ReplayMismatchError(f"get_logs token {token!r} is not in the recording; recorded: {known}")
        entry = self._at(resource_meta, pages, early=False)
        if entry is None:  # no lines read this early in the recording: caught up, nothing new yet
            yield agent_pb2.GetTaskLogsResponse(header=agent_pb2.GetTaskLogsResponseHeader(token=token))
            return
        self._raise_recorded(entry)
        for response in entry["response"]["responses"]:
            yield json_format.ParseDict(response, agent_pb2.GetTaskLogsResponse())


__all__ = [
    "FORMAT", "VERSION", "Recording", "RecordingError", "RecordingWriter", "ReplayConnector", "ReplayMeta",
    "ReplayMismatchError", "first_difference",
]
