"""The adapter plumbing in the project venv (no framework installed): errors, laziness, opaque metadata."""

from __future__ import annotations

import subprocess
import sys

import pytest

from connector_nb import Session
from connector_nb.adapters import foreign_connectors, is_foreign
from connector_nb.adapters._base import OpaqueMeta
from connector_nb.errors import ConnectorNbError, MissingExtraError
from connector_nb.examples.sleep import SleepConnector
from connector_nb.registry import ConnectorRegistry


def test_register_names_what_it_accepts():
    with pytest.raises(TypeError, match="flytekit's AsyncConnectorBase/SyncConnectorBase or Flyte 2's"):
        ConnectorRegistry().register(object())
    with pytest.raises(TypeError, match="secrets= applies to flytekit and Flyte 2 connectors only"):
        ConnectorRegistry().register(SleepConnector, secrets={"token": "x"})
    assert not is_foreign(SleepConnector()) and foreign_connectors(ConnectorRegistry()) is None


def test_session_registry_and_task_must_be_known_kinds():
    with pytest.raises(TypeError, match="registry: expected a ConnectorRegistry"):
        ConnectorRegistry.of({"sleep": SleepConnector()})
    with pytest.raises(TypeError, match="registry: expected"):
        Session(registry=42, journal=False)
    with pytest.raises(ValueError, match="framework: expected 'flytekit' or 'flyte', got 'airflow'"):
        Session(registry="airflow", journal=False)
    with Session(registry=ConnectorRegistry([SleepConnector]), journal=False) as s:
        with pytest.raises(TypeError, match="task: expected a task type name"):
            s.launch(3.5)


@pytest.mark.parametrize(("framework", "module", "extra"), [("flytekit", "flytekit", "flytekit"),
                                                             ("flyte", "flyte", "flyte")])
def test_missing_framework_names_the_extra(monkeypatch, framework, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ModuleNotFoundError
    for name in [m for m in sys.modules if m.startswith("connector_nb.adapters.")]:
        if name.endswith(("flytekit", "flyte2")):
            monkeypatch.delitem(sys.modules, name)
    with pytest.raises(MissingExtraError, match=rf"pip install 'connector_nb\[{extra}\]'") as caught:
        ConnectorRegistry.from_framework(framework)
    assert isinstance(caught.value, ImportError) and isinstance(caught.value, ConnectorNbError)
    with pytest.raises(ValueError, match="framework: expected 'flytekit' or 'flyte'"):
        ConnectorRegistry.from_framework("airflow")


def test_opaque_metadata_is_their_bytes_untouched():
    data = b"\x80\x04\x95pickle-looking bytes are never loaded by us"
    meta = OpaqueMeta.decode(data)
    assert meta.encode() == data and meta.data == data
    assert "pickle" not in repr(meta) and str(len(data)) in repr(meta)


def test_importing_connector_nb_imports_no_framework():
    code = ("import sys, connector_nb, connector_nb.registry, connector_nb.adapters, connector_nb.template; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flytekit', 'flyte', 'flyteidl2')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_thread_affinity_pins_our_own_connectors_sync_methods():
    import threading
    from dataclasses import dataclass

    from connector_nb import AsyncConnector, Resource, ResourceMeta
    from connector_nb.testing import fast_policy

    @dataclass
    class Meta(ResourceMeta):
        n: int = 0

    class ThreadLocalConnector(AsyncConnector[Meta]):
        """Keeps state in a thread-local between calls, as Airflow's ExecutorSafeguard does."""

        task_type_name = "thread_local"
        metadata_type = Meta
        input_types = {"polls": int}
        local = threading.local()
        threads: list[str] = []

        def create(self, task_template, output_prefix, inputs=None, **kwargs):
            self.local.callers = ["create"]
            self.threads.append(threading.current_thread().name)
            return Meta(n=inputs["polls"])

        def get(self, resource_meta, **kwargs):
            self.threads.append(threading.current_thread().name)
            self.local.callers.append("get")  # AttributeError on any other thread
            done = len(self.local.callers) > resource_meta.n
            return Resource(phase="SUCCEEDED" if done else "RUNNING", outputs={"calls": len(self.local.callers)})

        def delete(self, resource_meta, **kwargs):
            pass

    registry = ConnectorRegistry()
    pinned = registry.register(ThreadLocalConnector(), thread_affinity=True)
    assert pinned.supports("get") and not pinned.supports("get_logs") and pinned.thread_affinity
    with Session(registry=registry, journal=False, poll=fast_policy()) as session:
        run = session.launch("thread_local", polls=4)
        run.wait(timeout=30)
        assert run.error is None and run.phase == "SUCCEEDED" and run.outputs == {"calls": 5}
        # Every call on the one pinned thread (the session's worker pool names its threads connector-nb-worker-N).
        assert set(ThreadLocalConnector.threads) == {"cnb-thread_local_0"} and len(ThreadLocalConnector.threads) == 5
        assert list(run.template.interface.inputs.variables) == ["polls"]  # the wrapped interface
