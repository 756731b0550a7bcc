"""A connector whose ``create`` is slow, served by ``connector-nb serve --modules`` in the at-most-once tests.

Every ``create`` that reaches the service appends the run id (the execution name the session sends) to
``$SLOW_CREATE_LOG`` as soon as it starts, so the test counts jobs on the service side, even for a service
killed mid-create.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from connector_nb.connector import AsyncConnector, Resource, ResourceMeta


@dataclass
class SlowMeta(ResourceMeta):
    run_id: str


class SlowCreate(AsyncConnector):
    name = "Slow Create"
    task_type_name = "slow_create"
    metadata_type = SlowMeta
    input_types = {"seconds": float}
    input_defaults = {"seconds": 2.0}

    async def create(self, task_template, output_prefix, inputs=None, task_execution_metadata=None, **kwargs):
        run_id = task_execution_metadata.task_execution_id.node_execution_id.execution_id.name
        with open(os.environ["SLOW_CREATE_LOG"], "a") as log:
            log.write(run_id + "\n")
        await asyncio.sleep(float((inputs or {}).get("seconds", 2.0)))  # the external system taking its time
        return SlowMeta(run_id)

    async def get(self, resource_meta: SlowMeta, **kwargs) -> Resource:
        return Resource(phase="SUCCEEDED", message=resource_meta.run_id)

    async def delete(self, resource_meta: SlowMeta, **kwargs) -> None:
        pass
