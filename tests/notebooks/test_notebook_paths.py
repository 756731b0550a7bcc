"""The tutorials are self-contained: no machine paths in their stored outputs, no pointers outside the repo."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
# Absolute paths of a developer's machine: home folders, temp folders, interpreters, checkouts.
MACHINE_PATH = re.compile(r"(?<![\w.])(/(?:home|root|tmp|work|Users|opt|usr/local|var/folders)/[\w.+-]+)")
OUTSIDE = re.compile(r"DESIGN\.md|shared folder|\.\./shared")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.name for n in NOTEBOOKS])
def test_no_machine_paths_or_outside_references(notebook: Path):
    text = notebook.read_text()
    assert not MACHINE_PATH.findall(text), f"{notebook.name}: {sorted(set(MACHINE_PATH.findall(text)))[:5]}"
    assert not OUTSIDE.search(text)
