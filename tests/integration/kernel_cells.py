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


def run_code(client: Any, code: str, *, interrupt_after: str | None = None, km: Any = None,
             timeout: float = 120) -> tuple[str, list[dict[str, Any]]]:
    """Execute ``code`` through a jupyter_client ``client``; returns (stdout, error contents).

    With ``interrupt_after``, the kernel is interrupted (``km.interrupt_kernel()``) once that text was printed.
    """
    import queue

    msg_id = client.execute(code)
    out, errors, interrupted = "", [], False
    while True:
        try:
            msg = client.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no kernel output within {timeout} s; so far: {out!r}") from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            out += content["text"]
            if interrupt_after and interrupt_after in out and not interrupted:
                km.interrupt_kernel()
                interrupted = True
        elif kind == "error":
            errors.append(content)
        elif kind == "status" and content["execution_state"] == "idle":
            return out, errors


def run_ok(client: Any, code: str, timeout: float = 120) -> str:
    """Execute ``code``; return what it printed; fail the test on an error."""
    out, errors = run_code(client, code, timeout=timeout)
    assert not errors, "\n".join(errors[0]["traceback"])
    return out
