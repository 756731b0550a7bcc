"""Runs a file of in-process adapter cases with pytest inside the virtualenv that has its framework."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inproc_env import REPO, python_for

CASES = Path(__file__).resolve().parent / "adapters_cases"


def case_count(path: Path) -> int:
    """How many ``test_*`` functions the file defines (all must pass: none may be skipped or deselected)."""
    tree = ast.parse(path.read_text())
    return sum(isinstance(n, ast.FunctionDef) and n.name.startswith("test_") for n in tree.body)


def run_cases(extra: str, filename: str) -> None:
    """Run ``adapters_cases/<filename>`` in the venv of ``extra``; fail with pytest's output unless all passed."""
    python = python_for(extra)
    path = CASES / filename
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", str(path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{filename} failed in {python}:\n{output[-6000:]}"
    found = re.search(r"(\d+) passed", output)
    assert found and int(found.group(1)) == case_count(path), f"not every case ran:\n{output[-3000:]}"
    assert "skipped" not in output.splitlines()[-1], output[-3000:]
