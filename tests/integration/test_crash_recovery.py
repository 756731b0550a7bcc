"""A real crash: ``kill -9`` of a Jupyter kernel mid-run, then recovery in a new kernel from the journal.

The journal is on by default (no ``journal=`` argument anywhere here); CONNECTOR_NB_HOME points both
kernels at the same scratch home.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel
from kernel_cells import run_ok

from connector_nb.testing import wait_until


def _kernel(home: str) -> tuple[Any, Any]:
    return start_new_kernel(kernel_name="python3", env={**os.environ, "CONNECTOR_NB_HOME": home})


def _kill9(km: Any) -> None:
    os.kill(km.provisioner.process.pid, signal.SIGKILL)
    wait_until(lambda: not km.is_alive(), timeout=30, what="the kernel to die")


@pytest.mark.kernel
@pytest.mark.timeout(300)
def test_kill_9_mid_run_then_every_run_is_recovered_in_a_new_kernel(tmp_path):
    home = str(tmp_path / "home")
    km, client = _kernel(home)
    try:
        run_ok(client, "from connector_nb import Session\nsession = Session()\n"
                     "runs = [session.launch('sleep', seconds=3 + i % 3) for i in range(10)]\n"
                     "runs += [session.launch('shell', command=f'sleep {2 + i % 3}; echo job {i} done') "
                     "for i in range(10)]\n"
                     "print(sorted({r.phase for r in runs}))")
        _kill9(km)
    finally:
        client.stop_channels()
    km2, client2 = _kernel(home)
    try:
        out = run_ok(client2, "import json\nfrom connector_nb import Session\nsession = Session()\n"
                            "frame = session.recover()\n"
                            "runs = session.reattach_all()\n"
                            "final = [r.wait(timeout=120).phase for r in runs]\n"
                            "print(json.dumps({'listed': len(frame), 'reattached': len(runs), 'final': final,\n"
                            "                  'types': sorted(set(frame.task_type))}))\n"
                            "session.close()")
    finally:
        client2.stop_channels()
        km2.shutdown_kernel(now=True)
    result = json.loads(out.strip().splitlines()[-1])
    done = sum(p in ("SUCCEEDED", "FAILED", "ABORTED") for p in result["final"])
    print(f"recovered {result['reattached']}/20 runs after kill -9; {done}/20 reached a terminal phase "
          f"({done / 20:.0%}): {result['final']}")
    assert result["listed"] == 20 and result["reattached"] == 20 and result["types"] == ["shell", "sleep"]
    assert result["final"] == ["SUCCEEDED"] * 20


@pytest.mark.kernel
@pytest.mark.timeout(300)
def test_kernel_killed_during_a_slow_create_leaves_an_unknown_outcome_record(tmp_path):
    home = str(tmp_path / "home")
    marker = tmp_path / "create-started"
    km, client = _kernel(home)
    try:
        run_ok(client, "import threading\nfrom dataclasses import dataclass\n"
                     "from connector_nb import AsyncConnector, ResourceMeta, Resource, ConnectorRegistry, Session\n"
                     "@dataclass\nclass M(ResourceMeta):\n    job: str\n"
                     "class Slow(AsyncConnector[M]):\n    task_type_name = 'slow_create'\n    metadata_type = M\n"
                     f"    def create(self, task_template, output_prefix, inputs=None, **kw):\n"
                     f"        open({str(marker)!r}, 'w').close()\n"
                     "        threading.Event().wait()  # hangs until the kernel is killed\n        return M('x')\n"
                     "    def get(self, resource_meta, **kw):\n        return Resource(phase='RUNNING')\n"
                     "    def delete(self, resource_meta, **kw):\n        pass\n"
                     "session = Session(registry=ConnectorRegistry([Slow()]))")
        client.execute("run = session.launch('slow_create')")  # blocks inside create
        wait_until(marker.exists, timeout=60, what="create to start")
        _kill9(km)
    finally:
        client.stop_channels()
    km2, client2 = _kernel(home)
    try:
        out = run_ok(client2, "import json\nfrom connector_nb import Session\nsession = Session()\n"
                            "frame = session.recover()\n"
                            "row = frame.iloc[0]\n"
                            "try:\n    session.reattach(row.run_id)\n    why = ''\n"
                            "except Exception as e:\n    why = str(e)\n"
                            "print(json.dumps({'n': len(frame), 'task': row.task_type, 'phase': row.phase,\n"
                            "                  'unknown': bool(row.unknown_outcome), 'why': why}))\n"
                            "session.close()")
    finally:
        client2.stop_channels()
        km2.shutdown_kernel(now=True)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["n"] == 1 and result["task"] == "slow_create" and result["unknown"] is True
    assert "execution name" in result["why"]
