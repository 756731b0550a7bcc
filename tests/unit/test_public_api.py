"""The public surface: exports, lazy imports, the contract's shapes."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

import connector_nb
from connector_nb import AsyncConnector, AsyncConnectorBase, ConnectorRegistry, Resource, ResourceMeta
from connector_nb.errors import ConnectorNbError, MetadataError, UnknownTaskTypeError

CONTRACT = {"AsyncConnector", "AsyncConnectorBase", "ResourceMeta", "Resource", "ConnectorRegistry", "Session",
            "AsyncSession", "Run", "PollPolicy", "task_template"}


def test_contract_names_are_exported():
    assert CONTRACT <= set(connector_nb.__all__)
    for name in connector_nb.__all__:
        assert getattr(connector_nb, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        connector_nb.Nope  # noqa: B018


def test_progress_is_exported_lazily():
    from connector_nb.ui.progress import progress

    assert connector_nb.progress is progress


def test_import_is_light():
    code = ("import sys, connector_nb; heavy = [m for m in ('pandas', 'ipywidgets', 'grpc', 'flyteidl', "
            "'matplotlib', 'google.protobuf') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_py_typed_is_shipped():
    from importlib.resources import files

    assert files("connector_nb").joinpath("py.typed").is_file()


@dataclass
class _Meta(ResourceMeta):
    job_id: str
    attempt: int = 0


def test_resource_meta_is_json_and_round_trips():
    meta = _Meta("j1", 2)
    assert meta.encode() == b'{"job_id":"j1","attempt":2}'
    assert _Meta.decode(meta.encode()) == meta
    for bad, match in [(b"\x80\x81", "not JSON"), (b"[1]", "expected a JSON object"),
                       (b'{"x": 1}', "expected fields: job_id, attempt")]:
        with pytest.raises(MetadataError, match=match):
            _Meta.decode(bad)


def test_resource_phase_names_and_idl_round_trip():
    from flyteidl.core import execution_pb2

    r = Resource(phase=execution_pb2.TaskExecution.SUCCEEDED, message="ok", log_links=[("console", "http://x")],
                 outputs={"n": 3}, custom_info={"rows": 3})
    assert r.phase == "SUCCEEDED" and r.phase_value == 3 and r.is_final
    back = Resource.from_flyte_idl(r.to_flyte_idl())
    assert back.phase == "SUCCEEDED" and back.message == "ok" and back.custom_info == {"rows": 3}
    assert back.log_links[0].name == "console"
    from connector_nb.literals import to_python_dict

    assert to_python_dict(back.outputs) == {"n": 3}
    with pytest.raises(ValueError, match="unknown phase 'DONE'"):
        Resource(phase="DONE")


class FlytekitStyle(AsyncConnectorBase):
    name = "Flytekit style"

    def __init__(self):
        super().__init__(task_type_name="fk_style", metadata_type=_Meta)

    def create(self, task_template, output_prefix, inputs=None, task_execution_metadata=None, **kwargs):
        return _Meta("x")

    def get(self, resource_meta, **kwargs):
        return Resource(phase="SUCCEEDED")

    def delete(self, resource_meta, **kwargs):
        return None


def test_flytekit_style_constructor_and_registry():
    registry = ConnectorRegistry()
    conn = registry.register(FlytekitStyle())
    assert issubclass(AsyncConnectorBase, AsyncConnector)
    assert registry.get_connector("fk_style") is conn and conn.metadata_type is _Meta
    assert registry.list_connectors() == [conn]
    with pytest.raises(UnknownTaskTypeError, match=r"registered: fk_style \(v0\)"):
        registry.get_connector("other")


def test_registry_override_rules():
    registry = ConnectorRegistry([FlytekitStyle])
    other = type("Other", (FlytekitStyle,), {})
    with pytest.raises(ConnectorNbError, match="already handled.*override=True"):
        registry.register(other())
    registry.register(other(), override=True)
    assert type(registry.get_connector("fk_style")) is other


def test_redefined_class_replaces_with_a_notice():
    registry = ConnectorRegistry([FlytekitStyle()])
    namespace: dict = {}
    exec("class FlytekitStyle(Base):\n    pass", {"Base": FlytekitStyle, "__name__": __name__}, namespace)
    redefined = namespace["FlytekitStyle"]
    redefined.__qualname__ = FlytekitStyle.__qualname__
    with pytest.warns(UserWarning, match="re-registered 'fk_style'"):
        registry.register(redefined())
    assert type(registry.get_connector("fk_style")) is redefined


def test_registry_rejects_incomplete_connectors():
    class NoGet(AsyncConnector):
        task_type_name = "noget"
        metadata_type = _Meta

        def create(self, *a, **k):
            return _Meta("x")

        def delete(self, *a, **k):
            return None

    with pytest.raises(ConnectorNbError, match=r"does not implement get\(\)"):
        ConnectorRegistry([NoGet()])
    with pytest.raises(TypeError, match="expected an AsyncConnector"):
        ConnectorRegistry([object()])


def test_class_level_default_registry_has_the_examples():
    names = {c.task_type_name for c in ConnectorRegistry.list_connectors()}
    assert {"sleep", "shell", "sqlite_query"} <= names
    assert ConnectorRegistry.get_connector("sleep").task_type_name == "sleep"
