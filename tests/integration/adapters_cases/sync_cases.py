"""flytekit's sync ``WebhookConnector``, unmodified, served by *our* server and driven through ExecuteTaskSync.

Runs only in ``.venv-flytekit-nb`` (connector_nb + flytekit); ``tests/integration/test_sync_flytekit.py`` runs it.
"""

from __future__ import annotations

import http.server
import json
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
from flyteidl.admin import agent_pb2
from flyteidl.service import agent_pb2_grpc
from flytekit.extras.webhook import WebhookConnector, WebhookTask

from connector_nb import Session
from connector_nb.registry import ConnectorRegistry
from connector_nb.server import serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.fixture
def hook() -> Iterator[tuple[str, list[Any]]]:
    """A webhook receiver on 127.0.0.1 recording each POST body."""
    received: list[Any] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"thanks")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def service() -> Iterator[Any]:
    with serve(ConnectorRegistry([WebhookConnector()]), port=0, block=False) as handle:
        yield handle


def test_our_server_lists_flytekit_webhook_as_sync(service):
    with Session(service.target, journal=False) as remote:
        assert [(c.task_type, c.is_sync) for c in remote.connectors()] == [("webhook", True)]


def test_webhook_task_object_through_our_sync_service(service, hook, tmp_path):
    url, received = hook
    task = WebhookTask(name="notify", url=url, method="POST", data={"msg": "hello {inputs.who}"},
                       dynamic_inputs={"who": str})
    with Session(service.target, journal=False, output_dir=str(tmp_path)) as remote:
        run = remote.launch(task, who="grpc")  # the template made by flytekit's own serialization
        assert run.phase == "SUCCEEDED", run.message
        assert [t.phase for t in run.transitions] == ["QUEUED", "SUCCEEDED"] and run.get_calls == 0
        assert run.outputs["info"]["status_code"] == 200 and run.outputs["info"]["response_data"] == "thanks"
    assert received == [{"msg": "hello grpc"}]


def test_raw_execute_task_sync_against_our_server(service, hook):
    from connector_nb.literals import to_literal_map

    url, received = hook
    header = agent_pb2.CreateRequestHeader(output_prefix="/tmp/raw")
    header.template.type = "webhook"
    header.template.custom.update({"url": url, "method": "POST", "data": {"msg": "raw"}, "headers": {}})
    requests = [agent_pb2.ExecuteTaskSyncRequest(header=header),
                agent_pb2.ExecuteTaskSyncRequest(inputs=to_literal_map({}))]
    with grpc.insecure_channel(service.target.removeprefix("grpc://")) as channel:
        responses = list(agent_pb2_grpc.SyncAgentServiceStub(channel).ExecuteTaskSync(iter(requests), timeout=30))
    assert [r.WhichOneof("res") for r in responses] == ["header"]
    assert responses[0].header.resource.message == "Webhook was successfully invoked!"
    assert received == [{"msg": "raw"}]
