"""Run code cells in a fresh real Jupyter kernel (nbclient), for tests of kernel behaviour."""

from __future__ import annotations

from typing import Any, Sequence

import nbclient
import nbformat


def execute_cells(cells: Sequence[str], timeout: int = 120) -> Any:
    """The executed notebook made of ``cells`` (python3 kernel); raises if a cell raises."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3").execute()
    return nb


def stream_text(cell: Any) -> str:
    """Everything a cell printed."""
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
