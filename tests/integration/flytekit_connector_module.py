"""A connector written in flytekit's style, served by flytekit's own ``pyflyte serve connector``.

Imported only inside the flytekit virtualenv. ``delete`` writes a marker file under
``$INTEROP_MARKER_DIR`` so the test can see that cancelling reached the service.
"""

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from flyteidl.admin.agent_pb2 import GetTaskMetricsResponse
from flyteidl.core.execution_pb2 import TaskExecution
from flyteidl.core.metrics_pb2 import ExecutionMetricResult
from flytekit.extend.backend.base_connector import AsyncConnectorBase, ConnectorRegistry, Resource, ResourceMeta
from flytekit.models.literals import LiteralMap
from flytekit.models.task import TaskTemplate
from google.protobuf.struct_pb2 import Struct


@dataclass
class InteropMeta(ResourceMeta):
    job_id: str
    deadline: float
    fail: bool = False


def _primitive(inputs: LiteralMap | None, name: str, default):
    literal = (inputs.literals if inputs else {}).get(name)
    if literal is None or literal.scalar is None or literal.scalar.primitive is None:
        return default
    return literal.scalar.primitive.value


class InteropSleepConnector(AsyncConnectorBase):
    name = "Interop Sleep Connector"

    def __init__(self):
        super().__init__(task_type_name="interop_sleep", metadata_type=InteropMeta)

    async def create(self, task_template: TaskTemplate, output_prefix: str, inputs: LiteralMap | None = None,
                     **kwargs) -> InteropMeta:
        seconds = float(_primitive(inputs, "seconds", 0.0))
        return InteropMeta(job_id=uuid.uuid4().hex[:8], deadline=time.time() + seconds,
                           fail=bool(_primitive(inputs, "fail", False)))

    async def get(self, resource_meta: InteropMeta, **kwargs) -> Resource:
        if time.time() < resource_meta.deadline:
            return Resource(phase=TaskExecution.RUNNING, message="sleeping")
        if resource_meta.fail:
            return Resource(phase=TaskExecution.FAILED, message=f"job {resource_meta.job_id} failed on request")
        return Resource(phase=TaskExecution.SUCCEEDED, message="woke up", outputs={"job_id": resource_meta.job_id})

    async def delete(self, resource_meta: InteropMeta, **kwargs):
        marker_dir = Path(os.environ.get("INTEROP_MARKER_DIR", "."))
        (marker_dir / f"{resource_meta.job_id}.deleted").write_text("deleted\n")

    async def get_metrics(self, resource_meta: InteropMeta, **kwargs) -> GetTaskMetricsResponse:
        data = Struct()
        data.update({"result": [{"metric": {"job_id": resource_meta.job_id},
                                 "values": [[1700000000, "0.25"], [1700000001, "0.5"]]}]})
        return GetTaskMetricsResponse(results=[ExecutionMetricResult(metric="cpu_usage", data=data)])


class FastGetConnector(AsyncConnectorBase):
    """The benchmark's trivial connector: ``get`` returns at once."""

    name = "Fast Get Connector"

    def __init__(self):
        super().__init__(task_type_name="fast_get", metadata_type=InteropMeta)

    async def create(self, task_template: TaskTemplate, output_prefix: str, inputs: LiteralMap | None = None,
                     **kwargs) -> InteropMeta:
        return InteropMeta(job_id="fast", deadline=0.0)

    async def get(self, resource_meta: InteropMeta, **kwargs) -> Resource:
        return Resource(phase=TaskExecution.SUCCEEDED, message=resource_meta.job_id)

    async def delete(self, resource_meta: InteropMeta, **kwargs):
        pass


ConnectorRegistry.register(InteropSleepConnector())
ConnectorRegistry.register(FastGetConnector())
