"""pytest plugin (entry point ``pytest11``): fixtures for testing connectors and code that drives sessions.

``fake_connector`` (a scripted ``FakeConnector``), ``connector_registry`` (it plus the examples) and
``connector_session`` (a fast-polling Session over them, closed after the test) and ``connector_service``
(the same registry served over gRPC on 127.0.0.1, with a Session connected to it). Override
``connector_registry`` in your conftest to put your own connector behind both::

    @pytest.fixture
    def connector_registry():
        return ConnectorRegistry([MyConnector()])

    def test_my_connector_over_grpc(connector_service):
        run = connector_service.launch("my_task", n=3)
        assert run.wait(timeout=30).phase == "SUCCEEDED"
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from .testing import FakeConnector, fast_policy


@pytest.fixture
def fake_connector() -> FakeConnector:
    """A fresh scripted connector for task type ``fake`` (RUNNING, then SUCCEEDED)."""
    return FakeConnector()


@pytest.fixture
def connector_registry(fake_connector: FakeConnector) -> Any:
    """An isolated registry holding ``fake_connector`` and the built-in examples."""
    from .examples import CONNECTORS
    from .registry import ConnectorRegistry

    return ConnectorRegistry([fake_connector, *CONNECTORS])


@pytest.fixture
def connector_session(connector_registry: Any, tmp_path: Any) -> Iterator[Any]:
    """A blocking Session over ``connector_registry`` with fast polling, closed after the test."""
    from .session import Session

    session = Session(registry=connector_registry, poll=fast_policy(), output_dir=str(tmp_path),
                      journal=str(tmp_path / "journal.sqlite3"))
    try:
        yield session
    finally:
        session.close(cancel_running=True)


@pytest.fixture
def connector_service(connector_registry: Any, tmp_path: Any) -> Iterator[Any]:
    """``connector_registry`` served on 127.0.0.1 (a free port) for the test; yields a Session connected to it."""
    from .server import serve
    from .session import Session

    handle = serve(connector_registry, port=0, host="127.0.0.1", block=False)
    try:
        session = Session(handle.target, poll=fast_policy(), output_dir=str(tmp_path),
                          journal=str(tmp_path / "service-journal.sqlite3"))
        try:
            yield session
        finally:
            session.close(cancel_running=True)
    finally:
        handle.stop(grace=1.0)
