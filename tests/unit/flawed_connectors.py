"""Connectors with one flaw each, for the conformance check's tests (importable as ``flawed_connectors:Class``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from connector_nb import Resource, ResourceMeta
from connector_nb.testing import FakeConnector, FakeMeta

#: How long SleepyGet blocks the loop: well over the threshold its tests use.
BLOCK = 0.3


class GoodConnector(FakeConnector):
    """No flaw, and it deduplicates on the execution id."""

    def __init__(self) -> None:
        super().__init__("good", script=("QUEUED", "RUNNING", "SUCCEEDED"), outputs={"n": 3})
        self.output_types = {"n": int}  # type: ignore[misc]

    async def create(self, task_template: Any, output_prefix: str, inputs: dict[str, Any] | None = None,
                     **kwargs: Any) -> FakeMeta:
        execution = kwargs["task_execution_metadata"].task_execution_id.node_execution_id.execution_id.name
        self.gets.setdefault(execution, 0)
        return FakeMeta(execution)


class NonIdempotentDelete(FakeConnector):
    """``delete`` raises when the job is already deleted."""

    def __init__(self) -> None:
        super().__init__("non_idempotent_delete")

    async def delete(self, resource_meta: FakeMeta, **kwargs: Any) -> None:
        if resource_meta.job_id in self.deleted:
            raise RuntimeError(f"job {resource_meta.job_id} not found")
        await super().delete(resource_meta)


class SleepyGet(FakeConnector):
    """``async def get`` that calls ``time.sleep``: it stalls the event loop."""

    def __init__(self) -> None:
        super().__init__("sleepy_get", script=("SUCCEEDED",))

    async def get(self, resource_meta: FakeMeta, **kwargs: Any) -> Resource:
        time.sleep(BLOCK)  # the flaw under test
        return self._step(resource_meta.job_id)


@dataclass
class OtherMeta(ResourceMeta):
    """Not the connector's metadata_type."""

    handle: int


class WrongCreateType(FakeConnector):
    """``create`` returns a ResourceMeta that is not its ``metadata_type``."""

    def __init__(self) -> None:
        super().__init__("wrong_create_type")

    async def create(self, task_template: Any, output_prefix: str, inputs: dict[str, Any] | None = None,
                     **kwargs: Any) -> Any:
        return OtherMeta(7)


class BadLogLinks(FakeConnector):
    """Log links whose URIs have no scheme."""

    def __init__(self) -> None:
        links = [("console", "https://console.example.com/jobs/1"), ("driver log", "console.example.com/jobs/1")]
        super().__init__("bad_log_links", script=(Resource("RUNNING", log_links=links),
                                                  Resource("SUCCEEDED", log_links=links)))


class NeverEnds(FakeConnector):
    """A job that stays RUNNING for ever (until deleted)."""

    def __init__(self) -> None:
        super().__init__("never_ends", script=("RUNNING",))
