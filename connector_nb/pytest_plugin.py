"""pytest plugin (entry point ``pytest11``): fixtures for testing connectors and code that drives sessions.

``fake_connector`` (a scripted ``FakeConnector``), ``connector_registry`` (it plus the examples) and
``connector_session`` (a fast-polling Session over them, closed after the test).
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
