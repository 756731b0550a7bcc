"""A connector defined in a notebook session, served over gRPC by ``session.serve()`` and used remotely."""

from __future__ import annotations

import pytest

from connector_nb import ConnectorRegistry, Session
from connector_nb.errors import UnknownTaskTypeError
from connector_nb.testing import FakeConnector, fast_policy, phases


def test_session_serve_round_trip(tmp_path):
    fake = FakeConnector("nb_task", script=["RUNNING", "SUCCEEDED"], outputs={"answer": 42})
    with Session(registry=ConnectorRegistry([fake]), output_dir=str(tmp_path)) as local:
        handle = local.serve(port=0)
        try:
            assert handle.target.startswith("grpc://127.0.0.1:")
            with Session(handle.target, poll=fast_policy(), output_dir=str(tmp_path)) as remote:
                assert [(c.task_type, c.version) for c in remote.connectors()] == [("nb_task", 0)]
                run = remote.launch("nb_task")
                assert run.wait(timeout=20).phase == "SUCCEEDED"
                assert phases(run.transitions) == ["QUEUED", "RUNNING", "SUCCEEDED"]
                assert run.outputs == {"answer": 42}
                assert run.logs().lines == ["hello", "world"]
                with pytest.raises(UnknownTaskTypeError, match="nb_task"):
                    remote.launch("sleep", seconds=1)
        finally:
            handle.stop()
    assert [m for m, _ in fake.calls][:1] == ["create"] and "get" in {m for m, _ in fake.calls}


def test_remote_session_cannot_serve():
    from connector_nb.errors import ConnectorNbError

    with Session("grpc://127.0.0.1:1") as remote, pytest.raises(ConnectorNbError, match="only an in-process session"):
        remote.serve()
