"""The public surface, guarded as trio guards its exports: an exact snapshot, and every name resolves and is typed."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import connector_nb
from connector_nb import errors

EXPECTED = [
    "MissingExtraError",
    "LimitExceededError",
    "ServeRefusedError",
    "JournalVersionError",
    "JournalError",
    "SecretNotFoundError",
    "AsyncConnector", "AsyncConnectorBase", "AsyncSession", "AuthError", "CallTimeoutError", "ConnectorCallError",
    "ConnectorNbError", "ConnectorRegistry", "CreateOutcomeUnknownError", "EngineError", "GrpcTransport",
    "InputError", "LiteralConversionError", "LocalTransport", "MetadataError", "MockTransport", "NotSupportedError",
    "PollPolicy", "PollingStoppedError", "Resource", "ResourceMeta", "Run", "ServiceUnavailableError", "Session",
    "SessionClosedError", "Transition", "Transport", "UnknownRunError", "UnknownTaskTypeError", "WaitInterrupted",
    "__version__", "progress", "serve", "task_template",
]


def test_all_is_exactly_the_snapshot():
    assert sorted(connector_nb.__all__) == sorted(EXPECTED)
    assert sorted([*connector_nb._LAZY, "__version__"]) == sorted(connector_nb.__all__)
    assert dir(connector_nb) == connector_nb.__all__


def test_every_public_name_resolves_and_has_a_docstring():
    for name in connector_nb.__all__:
        value = getattr(connector_nb, name)
        if name != "__version__":
            assert inspect.getdoc(value), f"{name} has no docstring"


def test_every_error_class_is_exported():
    classes = {n for n, v in vars(errors).items() if inspect.isclass(v) and issubclass(v, errors.ConnectorNbError)}
    assert classes <= set(connector_nb.__all__)


def test_public_names_type_check_under_mypy_strict(tmp_path: Path):
    # A user's module written as in the README, in both styles, must pass mypy --strict with no ignores.
    source = textwrap.dedent('''
        from __future__ import annotations
        from dataclasses import dataclass
        from typing import Any
        from connector_nb import (AsyncConnector, AsyncConnectorBase, AsyncSession, ConnectorRegistry, PollPolicy,
                                  Resource, ResourceMeta, Run, Session, task_template)

        @dataclass
        class JobMeta(ResourceMeta):
            job_id: str

        class MyConnector(AsyncConnector[JobMeta]):
            name = "My connector"
            task_type_name = "my_task"
            metadata_type = JobMeta

            async def create(self, task_template: Any, output_prefix: str,
                             inputs: dict[str, Any] | None = None, **kwargs: Any) -> JobMeta:
                return JobMeta(job_id="1")

            async def get(self, resource_meta: JobMeta, **kwargs: Any) -> Resource:
                return Resource(phase="SUCCEEDED")

            async def delete(self, resource_meta: JobMeta, **kwargs: Any) -> None:
                return None

        class SyncStyle(AsyncConnectorBase):
            def __init__(self) -> None:
                super().__init__(task_type_name="sync_task", metadata_type=JobMeta)

            def create(self, task_template: Any, output_prefix: str,
                       inputs: dict[str, Any] | None = None, **kwargs: Any) -> JobMeta:
                return JobMeta(job_id="2")

            def get(self, resource_meta: JobMeta, **kwargs: Any) -> Resource:
                return Resource(phase="RUNNING")

            def delete(self, resource_meta: JobMeta, **kwargs: Any) -> None:
                pass

        def use() -> str:
            registry = ConnectorRegistry([MyConnector(), SyncStyle()])
            with Session(registry=registry, poll=PollPolicy(timeout=10), journal=False) as session:
                run: Run = session.launch("my_task")
                template = task_template("my_task", inputs={"n": int})
                assert template.type == "my_task"
                return run.run_id

        async def use_async() -> str:
            async with AsyncSession(registry=ConnectorRegistry([MyConnector()]), journal=False) as session:
                run = await session.launch("my_task")
                resource = await run.wait_async()
                return resource.phase
    ''')
    module = tmp_path / "user_connector.py"
    module.write_text(source)
    # Editable installs hide the package from mypy's import finder: point it at the checkout, and report
    # errors in the user's module only, as for an installed package.
    env = {**os.environ, "MYPYPATH": str(Path(connector_nb.__file__).resolve().parents[1])}
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\n\n[mypy-connector_nb.*]\nignore_errors = True\n")
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(config), "--no-incremental",
                             str(module)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_public_function_and_class_in_the_package_has_a_docstring():
    """Public = not underscored, in a module that is not private; methods inherit a base class's docstring."""
    import ast
    import importlib
    import importlib.util
    import pkgutil

    missing = []
    for info in pkgutil.walk_packages(connector_nb.__path__, "connector_nb."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an adapter for a framework (extra) that is not installed: read its source only
            module = None
        spec = importlib.util.find_spec(info.name)
        tree = ast.parse(Path(spec.origin if spec and spec.origin else "").read_text())
        defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        for node in tree.body:
            if isinstance(node, defs) and not node.name.startswith("_"):
                if module is None:
                    missing += [] if ast.get_docstring(node) else [f"{info.name}.{node.name}"]
                    continue
                value = getattr(module, node.name, None)
                if value is None or not inspect.getdoc(value):
                    missing.append(f"{info.name}.{node.name}")
                if isinstance(node, ast.ClassDef) and value is not None:
                    missing += [f"{info.name}.{node.name}.{m.name}" for m in node.body
                                if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))
                                and not m.name.startswith("_") and not inspect.getdoc(getattr(value, m.name, None))]
    assert not missing, missing
