"""Test helpers: a scripted fake connector, fast poll policies and condition waits (no pytest needed).

The pytest fixtures built on them live in ``connector_nb.pytest_plugin`` (entry point ``pytest11``).

``FakeConnector`` plays the role of httpx's ``MockTransport``: a real connector whose ``get`` walks a
script of phases, recording every call, so session behaviour can be tested without external systems.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .connector import AsyncConnector, Resource, ResourceMeta

Step = str | Resource | BaseException


@dataclass
class FakeMeta(ResourceMeta):
    """A fake job's handle: its id."""
    job_id: str


class FakeConnector(AsyncConnector[FakeMeta]):
    """``get`` returns the next step of ``script`` per job (the last one repeats); an exception step raises.

    ``raises`` maps a method name to an exception raised by that method. Every call is kept in ``calls``.
    """

    name = "Fake connector"

    def __init__(
        self,
        task_type_name: str = "fake",
        script: Sequence[Step] = ("RUNNING", "SUCCEEDED"),
        *,
        raises: dict[str, BaseException] | None = None,
        input_types: dict[str, Any] | None = None,
        outputs: dict[str, Any] | None = None,
        logs: Sequence[Sequence[str]] = (("hello", "world"),),
        task_type_version: int = 0,
    ) -> None:
        super().__init__(task_type_name=task_type_name, metadata_type=FakeMeta, task_type_version=task_type_version)
        self.script = list(script)
        self.raises = dict(raises or {})
        self.input_types = dict(input_types or {})  # type: ignore[misc]
        self.outputs = outputs
        self.log_pages = [list(page) for page in logs]
        self.calls: list[tuple[str, str]] = []
        self.gets: dict[str, int] = {}
        self.deleted: set[str] = set()
        self.created: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    def _enter(self, method: str, job_id: str) -> None:
        self.calls.append((method, job_id))
        if method in self.raises:
            raise self.raises[method]

    async def create(self, task_template: Any, output_prefix: str, inputs: dict[str, Any] | None = None,
                     **kwargs: Any) -> FakeMeta:
        """Start a fake job (records the call and its inputs)."""
        job_id = f"job-{next(self._ids)}"
        self._enter("create", job_id)
        self.created[job_id] = dict(inputs or {})
        self.gets[job_id] = 0
        return FakeMeta(job_id)

    async def get(self, resource_meta: FakeMeta, **kwargs: Any) -> Resource:
        """The next step of the script for this job."""
        return self._step(resource_meta.job_id)

    async def delete(self, resource_meta: FakeMeta, **kwargs: Any) -> None:
        """Mark the job deleted (idempotent)."""
        self._enter("delete", resource_meta.job_id)
        self.deleted.add(resource_meta.job_id)

    async def get_metrics(self, resource_meta: FakeMeta, **kwargs: Any) -> Any:
        """Three samples of a ``load`` metric."""
        from flyteidl.admin import agent_pb2
        from flyteidl.core import metrics_pb2
        from google.protobuf import json_format, struct_pb2

        self._enter("get_metrics", resource_meta.job_id)
        data = {"result": [{"metric": {"job": resource_meta.job_id},
                            "values": [[1700000000 + i, str(i * 1.5)] for i in range(3)]}]}
        struct = json_format.ParseDict(data, struct_pb2.Struct())
        return agent_pb2.GetTaskMetricsResponse(results=[metrics_pb2.ExecutionMetricResult(metric="load", data=struct)])

    async def get_logs(self, resource_meta: FakeMeta, token: str = "", **kwargs: Any) -> Any:
        """Pages of lines; the header carries the next page's index as the token."""
        from flyteidl.admin import agent_pb2

        self._enter("get_logs", resource_meta.job_id)
        page = int(token or 0)
        more = page + 1 < len(self.log_pages)
        header = agent_pb2.GetTaskLogsResponseHeader(token=str(page + 1) if more else "")
        yield agent_pb2.GetTaskLogsResponse(header=header)
        if page < len(self.log_pages):
            yield agent_pb2.GetTaskLogsResponse(body=agent_pb2.GetTaskLogsResponseBody(results=self.log_pages[page]))

    def _step(self, job_id: str) -> Resource:
        self._enter("get", job_id)
        if job_id in self.deleted:
            return Resource(phase="ABORTED", message="deleted")
        self.gets[job_id] = n = self.gets.get(job_id, 0) + 1
        step = self.script[min(n, len(self.script)) - 1]
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, Resource):
            return step
        outputs = self.outputs if step == "SUCCEEDED" else None
        return Resource(phase=step, message=f"{step.lower()} (get #{n})", outputs=outputs)


class BlockingFakeConnector(FakeConnector):
    """The same script through blocking ``def`` methods that sleep ``block`` seconds (run off the loop)."""

    def __init__(self, *args: Any, block: float = 0.05, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.block = block

    def get(self, resource_meta: FakeMeta, **kwargs: Any) -> Resource:  # type: ignore[override]
        """The next step, after blocking the worker thread for ``block`` seconds."""
        time.sleep(self.block)
        return self._step(resource_meta.job_id)


def fast_policy(**overrides: Any) -> Any:
    """A PollPolicy for tests: millisecond intervals, no jitter."""
    from .polling import PollPolicy

    options = {"first_interval": 0.005, "growth": 1.2, "max_interval": 0.05, "jitter": 0.0, "error_backoff": 0.005}
    return PollPolicy(**{**options, **overrides})


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.01, what: str = "condition") -> None:
    """Poll ``predicate`` until true; fails the test with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def process_group_gone(pgid: int) -> bool:
    """Whether no process is left in group ``pgid`` (for connectors that run subprocesses)."""
    import os

    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def phases(transitions: Iterable[Any]) -> list[str]:
    """The phase names of some transitions, in order."""
    return [t.phase for t in transitions]


# The conformance check lives in check.py; these names are its public home.
from .check import CHECKS, CheckReport, CheckResult, check_connector, check_connector_async  # noqa: E402

__all__ = [
    "BlockingFakeConnector", "CHECKS", "CheckReport", "CheckResult", "FakeConnector", "FakeMeta", "check_connector",
    "check_connector_async", "fast_policy", "phases", "process_group_gone", "Step", "wait_until",
]
