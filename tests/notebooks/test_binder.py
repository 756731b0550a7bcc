"""Binder: a fresh virtualenv built from ``binder/requirements.txt`` alone runs the quickstart notebook.

This does what mybinder.org's repo2docker does with a ``binder/`` folder: in a clean checkout, from the
repository root, ``pip install -r binder/requirements.txt`` (so ``.`` there is the repository itself), then
open ``notebooks/01_quickstart.ipynb`` with that environment's kernel. Nothing from the development
virtualenv leaks in: the new venv has no system site-packages, and the notebook runs in a kernel started
from the new venv's own kernelspec, driven by the new venv's own nbclient.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
#: What a clean checkout does not have (virtualenvs, caches, build output).
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", ".venv-*", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache", ".ruff_cache",
    "test-artifacts", ".ipynb_checkpoints", "node_modules",
)
KERNEL = "connector-nb-binder-test"

# Runs with the new venv's python: execute the notebook like a Binder user opening it would.
DRIVER = textwrap.dedent(
    """
    import json, sys
    import nbformat
    from nbclient import NotebookClient

    path, out, kernel = sys.argv[1:4]
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name=kernel, timeout=120, resources={"metadata": {"path": sys.argv[4]}})
    client.execute()
    nbformat.write(nb, out)
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                texts.append(output["text"])
            elif "text/plain" in output.get("data", {}):
                texts.append(output["data"]["text/plain"])
    print(json.dumps({"executable": sys.executable, "cells": len(nb.cells), "texts": texts}))
    """
)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


def test_binder_requirements_run_the_quickstart(tmp_path: Path) -> None:
    requirements = ROOT / "binder" / "requirements.txt"
    assert requirements.is_file(), "binder/requirements.txt is missing"
    assert (ROOT / "binder" / "runtime.txt").read_text().strip().startswith("python-3.")

    # A clean checkout, as Binder clones it (no build output of the development tree gets in).
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=IGNORED)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, 120)
    python = venv / "bin" / "python"
    # Exactly Binder's step: from the repository root, the requirements file alone.
    _run([str(python), "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"], repo, 900)

    # Installed from the checkout (a regular install, not the development tree), importable.
    probe = _run([str(python), "-c", "import connector_nb, jupyterlab, matplotlib; print(connector_nb.__file__)"],
                 tmp_path, 120)
    installed = Path(probe.stdout.strip())
    assert installed.is_relative_to(venv), f"connector_nb imported from {installed}, not from the new venv"

    # The venv's own kernelspec, under a name no other environment uses.
    _run([str(python), "-m", "ipykernel", "install", "--prefix", str(venv), "--name", KERNEL,
          "--display-name", "binder test"], tmp_path, 120)

    driver = tmp_path / "run_notebook.py"
    driver.write_text(DRIVER)
    notebook = repo / "notebooks" / "01_quickstart.ipynb"
    executed = tmp_path / "01_quickstart.executed.ipynb"
    result = _run([str(python), str(driver), str(notebook), str(executed), KERNEL, str(notebook.parent)],
                  tmp_path, 300)
    report = json.loads(result.stdout.strip().splitlines()[-1])

    assert Path(report["executable"]).parent == python.parent
    output = "\n".join(report["texts"])
    assert "sleep          Sleep Connector" in output
    assert "SUCCEEDED\n{'slept': 2.0}" in output, output[-2000:]
    assert "ABORTED" in output
    assert executed.is_file()
