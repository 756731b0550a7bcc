"""Real flyteidl2 clients (Flyte 2's generated stubs, in the Flyte 2 virtualenv) against ``connector_nb.serve``:
list, get connector, create with a Connection, get, delete, the logs stream, and an unknown task type."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from flyteidl.admin import agent_pb2

sys.path.insert(0, str(Path(__file__).parent))
from flyte2_env import flyte2_python

from connector_nb.connector import AsyncConnector, Resource, ResourceMeta
from connector_nb.registry import ConnectorRegistry
from connector_nb.server import serve

pytestmark = [pytest.mark.interop, pytest.mark.timeout(600)]
#: (method, keyword arguments from the Connection) of every call the connector received.
CALLS: list[tuple[str, dict[str, str]]] = []

_CLIENT = r"""
import json, sys
import grpc
from flyteidl2.connector import connector_pb2 as c, service_pb2_grpc as s
from flyteidl2.core import interface_pb2, literals_pb2, security_pb2, tasks_pb2, types_pb2
from flyteidl2.core.execution_pb2 import TaskExecution
from flyteidl2.task import common_pb2

out = {}
with grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}") as channel:
    meta, svc = s.ConnectorMetadataServiceStub(channel), s.AsyncConnectorServiceStub(channel)
    listed = meta.ListConnectors(c.ListConnectorsRequest(), timeout=10).connectors
    out["list"] = {x.name: [[t.name, t.version] for t in x.supported_task_categories] for x in listed}
    out["get_connector"] = meta.GetConnector(c.GetConnectorRequest(name="Stub Target"), timeout=10).connector.name
    template = tasks_pb2.TaskTemplate(type="stub_target")
    template.interface.inputs.variables.add(
        key="n", value=interface_pb2.Variable(type=types_pb2.LiteralType(simple=types_pb2.INTEGER)))
    seven = literals_pb2.Literal(scalar=literals_pb2.Scalar(primitive=literals_pb2.Primitive(integer=7)))
    inputs = common_pb2.Inputs(literals=[common_pb2.NamedLiteral(name="n", value=seven)])
    connection = security_pb2.Connection(secrets={"api_token": "stub-secret"}, configs={"region": "r1"})
    created = svc.CreateTask(c.CreateTaskRequest(template=template, inputs=inputs, output_prefix="/tmp/stub",
                                                 connection=connection), timeout=10)
    category = c.TaskCategory(name="stub_target", version=0)
    resource = svc.GetTask(c.GetTaskRequest(task_category=category, resource_meta=created.resource_meta,
                                            connection=connection), timeout=10).resource
    out["get"] = {"phase": TaskExecution.Phase.Name(resource.phase), "message": resource.message,
                  "outputs": {x.name: x.value.scalar.primitive.integer for x in resource.outputs.literals}}
    svc.DeleteTask(c.DeleteTaskRequest(task_category=category, resource_meta=created.resource_meta,
                                       connection=connection), timeout=10)
    stream = svc.GetTaskLogs(c.GetTaskLogsRequest(task_category=category, resource_meta=created.resource_meta),
                             timeout=10)
    out["logs"] = [[line.message for line in r.body.lines] for r in stream]
    try:
        svc.GetTask(c.GetTaskRequest(task_category=c.TaskCategory(name="nope"), resource_meta=b"{}"), timeout=10)
    except grpc.RpcError as e:
        out["unknown"] = [e.code().name, e.details()]
print(json.dumps(out))
"""


@dataclass
class StubMeta(ResourceMeta):
    job_id: str
    n: int


class StubTarget(AsyncConnector):
    name = "Stub Target"
    task_type_name = "stub_target"
    metadata_type = StubMeta
    input_types = {"n": int}
    output_types = {"doubled": int}

    async def create(self, task_template, output_prefix, inputs=None, task_execution_metadata=None,
                     **kwargs) -> StubMeta:
        CALLS.append(("create", kwargs))
        return StubMeta(uuid.uuid4().hex[:8], int((inputs or {})["n"]))

    async def get(self, resource_meta: StubMeta, **kwargs) -> Resource:
        CALLS.append(("get", kwargs))
        return Resource(phase="SUCCEEDED", message=f"region {kwargs.get('region')}",
                        outputs={"doubled": 2 * resource_meta.n})

    async def delete(self, resource_meta: StubMeta, **kwargs) -> None:
        CALLS.append(("delete", kwargs))

    async def get_logs(self, resource_meta: StubMeta, **kwargs):
        for n in range(2):
            line = agent_pb2.LogLine(message=f"{resource_meta.job_id} says {n}")
            line.timestamp.FromSeconds(int(time.time()))
            yield agent_pb2.GetTaskLogsResponse(body=agent_pb2.GetTaskLogsResponseBody(structured_lines=[line]))


def test_flyteidl2_stubs_against_our_server():
    python = flyte2_python()
    with serve(ConnectorRegistry([StubTarget]), port=0, host="127.0.0.1", block=False) as handle:
        done = subprocess.run([str(python), "-c", _CLIENT, str(handle.port)], capture_output=True, text=True,
                              timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["list"] == {"Stub Target": [["stub_target", 0]]}
    assert out["get_connector"] == "Stub Target"
    assert out["get"] == {"phase": "SUCCEEDED", "message": "region r1", "outputs": {"doubled": 14}}
    job = out["logs"][0][0].split()[0]
    assert out["logs"] == [[f"{job} says 0"], [f"{job} says 1"]]
    assert out["unknown"][0] == "NOT_FOUND" and "stub_target (v0)" in out["unknown"][1]
    # As Flyte 2's server does: Connection secrets and configs are keyword arguments of create/get/delete.
    expected = {"api_token": "stub-secret", "region": "r1"}
    assert CALLS == [("create", expected), ("get", expected), ("delete", expected)]
