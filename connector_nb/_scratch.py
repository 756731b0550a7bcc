"""A session's scratch folder: made only when a run needs an output location, removed on close.

The rule (documented in the README): a folder the session made itself is removed on ``close()`` unless an
output of a run the session still tracks points into it. A folder the user gave (``output_dir=``) is
never removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Iterable


class Scratch:
    """A lazily created output folder."""

    def __init__(self, given: str | None) -> None:
        """Use ``given``; without one, make a temporary folder on first use."""
        self._path = given
        self._owned = given is None

    @property
    def path(self) -> str:
        """The folder, made now if needed."""
        if self._path is None:
            self._path = tempfile.mkdtemp(prefix="connector-nb-")
        return self._path

    def remove(self, outputs: Iterable[Any]) -> bool:
        """Remove the folder if the session made it and none of ``outputs`` refers into it; True if removed."""
        path = self._path
        if not self._owned or path is None or not os.path.isdir(path):
            return False
        if any(path in str(value) for value in outputs if value is not None):
            return False
        shutil.rmtree(path, ignore_errors=True)
        return True
