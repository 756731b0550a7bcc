"""A connector that echoes every secret it is given into its messages, logs and errors (for the secrets walk)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator

from flyteidl.admin import agent_pb2
from google.protobuf import json_format

from connector_nb import AsyncConnector, Resource, ResourceMeta

#: job id -> everything the job was given, as text (what a careless connector would print)
SEEN: dict[str, str] = {}


@dataclass
class LeakyMeta(ResourceMeta):
    job: str


class Leaky(AsyncConnector[LeakyMeta]):
    """Echoes its inputs, custom and declared secret everywhere."""

    name = "Leaky"
    task_type_name = "leaky"
    metadata_type = LeakyMeta
    input_types = {"api_key": str, "conn": str, "n": int}
    secrets = ("leaky_api_secret",)

    async def create(self, task_template: Any, output_prefix: str, inputs: dict[str, Any] | None = None,
                     **kwargs: Any) -> LeakyMeta:
        job = uuid.uuid4().hex[:8]
        custom = json_format.MessageToDict(task_template.custom)
        SEEN[job] = f"inputs={inputs} custom={custom} secret={kwargs.get('leaky_api_secret')}"
        return LeakyMeta(job)

    async def get(self, resource_meta: LeakyMeta, **kwargs: Any) -> Resource:
        seen = SEEN.get(resource_meta.job, f"secret={kwargs.get('leaky_api_secret')}")
        return Resource(phase="FAILED", message=f"job failed; it was given {seen}",
                        custom_info={"echo": seen})

    async def delete(self, resource_meta: LeakyMeta, **kwargs: Any) -> None:
        return None

    async def get_logs(self, resource_meta: LeakyMeta, **kwargs: Any) -> AsyncIterator[Any]:
        seen = SEEN.get(resource_meta.job, "")
        yield agent_pb2.GetTaskLogsResponse(body=agent_pb2.GetTaskLogsResponseBody(results=[f"echo: {seen}"]))

    async def get_metrics(self, resource_meta: LeakyMeta, **kwargs: Any) -> Any:
        raise RuntimeError(f"metrics broke; given {SEEN.get(resource_meta.job, '')}")
