"""Connectors shared by the benchmarks: cheap, async, with a known moment of completion."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from connector_nb import AsyncConnector, Resource, ResourceMeta

# Benchmarks journal into a scratch home (the journal is on by default), never the user's.
os.environ.setdefault("CONNECTOR_NB_HOME", tempfile.mkdtemp(prefix="connector-nb-bench-"))


@dataclass
class TimerMeta(ResourceMeta):
    ends_at: float  # time.time() when the job becomes SUCCEEDED


class TimerConnector(AsyncConnector):
    """A job that is RUNNING until ``seconds`` after create, then SUCCEEDED; records when it ended."""

    name = "Timer"
    task_type_name = "timer"
    metadata_type = TimerMeta
    input_types = {"seconds": float}

    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None, **kw: Any) -> TimerMeta:
        return TimerMeta(time.time() + inputs["seconds"])

    async def get(self, resource_meta: TimerMeta, **kw: Any) -> Resource:
        done = time.time() >= resource_meta.ends_at
        return Resource(phase="SUCCEEDED" if done else "RUNNING")

    async def delete(self, resource_meta: TimerMeta, **kw: Any) -> None:
        return None


@dataclass
class CountMeta(ResourceMeta):
    job: int


class ThreeGetsConnector(AsyncConnector):
    """SUCCEEDED on the third ``get`` of each job: pure framework overhead."""

    name = "Three gets"
    task_type_name = "three_gets"
    metadata_type = CountMeta

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[int, int] = {}
        self.total_gets = 0

    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None, **kw: Any) -> CountMeta:
        job = len(self.counts)
        self.counts[job] = 0
        return CountMeta(job)

    async def get(self, resource_meta: CountMeta, **kw: Any) -> Resource:
        self.total_gets += 1
        self.counts[resource_meta.job] += 1
        return Resource(phase="SUCCEEDED" if self.counts[resource_meta.job] >= 3 else "RUNNING")

    async def delete(self, resource_meta: CountMeta, **kw: Any) -> None:
        return None
