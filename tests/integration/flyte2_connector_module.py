"""A connector written against Flyte 2's ``flyte.connectors.AsyncConnector``, served by Flyte 2's own ``c0``.

Imported only inside the Flyte 2 virtualenv. Marker files under ``$INTEROP_MARKER_DIR`` let the tests see
what reached the service: ``<job>.created`` (with the Connection secret it received) and ``<job>.deleted``.
"""

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from flyte.connectors import AsyncConnector, ConnectorRegistry, Resource, ResourceMeta
from flyteidl2.connector.connector_pb2 import (
    GetTaskLogsResponse,
    GetTaskLogsResponseBody,
    GetTaskMetricsResponse,
)
from flyteidl2.core.execution_pb2 import TaskExecution
from flyteidl2.core.metrics_pb2 import ExecutionMetricResult
from flyteidl2.logs.dataplane.payload_pb2 import LogLine
from google.protobuf.struct_pb2 import Struct


def _markers() -> Path:
    return Path(os.environ.get("INTEROP_MARKER_DIR", "."))


@dataclass
class F2Meta(ResourceMeta):
    job_id: str
    deadline: float
    fail: bool = False


class F2SleepConnector(AsyncConnector):
    name = "Flyte2 Sleep Connector"
    task_type_name = "f2_sleep"
    metadata_type = F2Meta

    async def create(self, task_template, output_prefix, inputs=None, task_execution_metadata=None, **kwargs):
        inputs = inputs or {}
        if inputs.get("explode"):  # a connector error that echoes the secret: the client must mask it
            raise RuntimeError(f"the service rejected key {kwargs.get('api_token')}")
        job_id = uuid.uuid4().hex[:8]
        # Flyte 2 passes Connection.secrets / configs as keyword arguments.
        (_markers() / f"{job_id}.created").write_text(str(kwargs.get("api_token", "")))
        return F2Meta(job_id=job_id, deadline=time.time() + float(inputs.get("seconds", 0.0)),
                      fail=bool(inputs.get("fail", False)))

    async def get(self, resource_meta: F2Meta, **kwargs) -> Resource:
        if time.time() < resource_meta.deadline:
            return Resource(phase=TaskExecution.RUNNING, message="sleeping")
        if resource_meta.fail:
            return Resource(phase=TaskExecution.FAILED, message=f"job {resource_meta.job_id} failed on request")
        return Resource(phase=TaskExecution.SUCCEEDED, message="woke up",
                        outputs={"job_id": resource_meta.job_id, "count": 3})

    async def delete(self, resource_meta: F2Meta, **kwargs):
        (_markers() / f"{resource_meta.job_id}.deleted").write_text("deleted\n")

    async def get_metrics(self, resource_meta: F2Meta, **kwargs) -> GetTaskMetricsResponse:
        data = Struct()
        data.update({"result": [{"metric": {"job_id": resource_meta.job_id},
                                 "values": [[1700000000, "0.25"], [1700000001, "0.5"]]}]})
        return GetTaskMetricsResponse(results=[ExecutionMetricResult(metric="cpu_usage", data=data)])

    async def get_logs(self, resource_meta: F2Meta, **kwargs):
        for n in range(2):
            line = LogLine(message=f"{resource_meta.job_id} line {n}")
            line.timestamp.FromSeconds(1700000000 + n)
            yield GetTaskLogsResponse(body=GetTaskLogsResponseBody(lines=[line]))


class F2PlainConnector(AsyncConnector):
    """Only the required methods: no metrics, no logs."""

    name = "Flyte2 Plain Connector"
    task_type_name = "f2_plain"
    metadata_type = F2Meta

    async def create(self, task_template, output_prefix, inputs=None, task_execution_metadata=None, **kwargs):
        return F2Meta(job_id="plain", deadline=0.0)

    async def get(self, resource_meta: F2Meta, **kwargs) -> Resource:
        return Resource(phase=TaskExecution.SUCCEEDED)

    async def delete(self, resource_meta: F2Meta, **kwargs):
        pass


ConnectorRegistry.register(F2SleepConnector())
ConnectorRegistry.register(F2PlainConnector())
