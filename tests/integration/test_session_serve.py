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


def test_secrets_in_connector_errors_stay_off_the_wire_and_the_server_log(tmp_path, caplog):
    import logging

    from connector_nb.errors import ConnectorCallError

    class Leaky(FakeConnector):
        async def create(self, task_template, output_prefix, inputs=None, **kwargs):
            raise PermissionError(f"bad credentials: {inputs['db_password']}")

    leaky = Leaky("leaky", input_types={"db_password": str})
    caplog.set_level(logging.INFO, logger="connector_nb.server")
    with Session(registry=ConnectorRegistry([leaky]), output_dir=str(tmp_path)) as local:
        handle = local.serve(port=0)
        try:
            with Session(handle.target, output_dir=str(tmp_path)) as remote:
                with pytest.raises(ConnectorCallError) as info:
                    remote.launch("leaky", db_password="hunter2-very-secret")
        finally:
            handle.stop()
    assert "bad credentials" in str(info.value) and "hunter2-very-secret" not in str(info.value)
    assert "CreateTask" in caplog.text and "hunter2-very-secret" not in caplog.text
