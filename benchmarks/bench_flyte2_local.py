"""Flyte 2's own local runner vs connector_nb, side by side on the same Flyte 2 connector.

Jobs of 0.2 s, 2 s and 20 s: time to result and ``get`` calls; then Ctrl-C (SIGINT) during a 20 s job in a
real subprocess of each: is the connector's ``delete`` called? Flyte 2's runner
(``AsyncConnectorExecutorMixin.execute``) sleeps 3 s after every ``get`` and has no abort.
Needs ``flyte``: run from the project venv, it re-runs itself in ``.venv-flyte2-nb`` (built if missing).
"""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DURATIONS = (0.2, 2.0, 20.0)
MARKERS = Path(os.environ.get("BENCH_MARKERS", tempfile.gettempdir()))


def _in_flyte_venv() -> None:
    """Re-exec in the venv that has connector_nb and flyte, unless this one has both."""
    try:
        import flyte.connectors  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO / "tests" / "integration"))
        from inproc_env import python_for

        os.execv(str(python_for("flyte")), [str(python_for("flyte")), *sys.argv])


def _define() -> tuple[object, object]:
    """The Flyte 2 connector (counts gets, marks create/delete) and a task of its type for Flyte 2's runner."""
    from flyte.connectors import AsyncConnector, AsyncConnectorExecutorMixin, ConnectorRegistry, Resource, ResourceMeta
    from flyte.extend import TaskTemplate
    from flyte.models import NativeInterface
    from flyteidl2.core.execution_pb2 import TaskExecution

    @dataclass
    class SleepMeta(ResourceMeta):
        job_id: str
        deadline: float

    class SleepConnector(AsyncConnector):
        name = "Bench Sleep"
        task_type_name = "bench_sleep"
        metadata_type = SleepMeta
        gets = 0

        async def create(self, task_template, output_prefix, inputs=None, **kwargs):
            job = uuid.uuid4().hex[:8]
            (MARKERS / "created").write_text(job)
            return SleepMeta(job_id=job, deadline=time.time() + float(inputs["seconds"]))

        async def get(self, resource_meta, **kwargs):
            type(self).gets += 1
            if time.time() < resource_meta.deadline:
                return Resource(phase=TaskExecution.RUNNING)
            return Resource(phase=TaskExecution.SUCCEEDED, outputs={"job_id": resource_meta.job_id})

        async def delete(self, resource_meta, **kwargs):
            (MARKERS / "deleted").write_text(resource_meta.job_id)

    class SleepTask(AsyncConnectorExecutorMixin, TaskTemplate):
        """A task of the connector's type, as a Flyte 2 plugin defines one."""

    connector = SleepConnector()
    ConnectorRegistry.register(connector, override=True)
    interface = NativeInterface.from_types(inputs={"seconds": (float, inspect.Parameter.empty)},
                                           outputs={"job_id": str})
    task = SleepTask(name="bench_sleep_task", interface=interface, task_type="bench_sleep", image=None)
    import flyte

    flyte.TaskEnvironment.from_task("bench_env", task)
    return connector, task


def flyte_local(task: object, seconds: float) -> None:
    """One run with Flyte 2's local runner."""
    import flyte

    flyte.init()
    flyte.with_runcontext(mode="local").run(task, seconds=seconds)


def connector_nb(connector: object, seconds: float) -> None:
    """One run with connector_nb (in-process, default poll policy); Ctrl-C cancels the run."""
    from connector_nb import ConnectorRegistry, Session

    with Session(registry=ConnectorRegistry([connector]), journal=False) as session:
        session.launch("bench_sleep", seconds=seconds).wait(cancel_on_interrupt=True)


def interrupted(runner: str) -> str:
    """SIGINT a subprocess running a 20 s job with ``runner`` once the job exists: was delete called?"""
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "BENCH_MARKERS": folder}
        proc = subprocess.Popen([sys.executable, __file__, "--one", runner, "20"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        created, deleted = Path(folder) / "created", Path(folder) / "deleted"
        deadline = time.monotonic() + 60
        while not created.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)  # a benchmark, not a test: poll for the marker
        time.sleep(0.5)  # let it settle into polling
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        try:
            proc.wait(timeout=30)
            ended = f"process ended {time.monotonic() - sent:.1f} s after Ctrl-C"
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            ended = "still running 30 s after Ctrl-C (killed)"
        return f"delete called: {'yes' if deleted.exists() else 'NO'} ({ended})"


def main() -> None:
    _in_flyte_venv()
    if sys.argv[1:2] == ["--one"]:
        connector, task = _define()
        runner, seconds = sys.argv[2], float(sys.argv[3])
        flyte_local(task, seconds) if runner == "flyte" else connector_nb(connector, seconds)
        return
    connector, task = _define()
    print(f"{'job':>6} | {'Flyte 2 local runner':>26} | {'connector_nb':>26} | speed-up")
    for seconds in DURATIONS:
        row = []
        for run, subject in ((flyte_local, task), (connector_nb, connector)):
            type(connector).gets = 0
            start = time.perf_counter()
            run(subject, seconds)
            row.append((time.perf_counter() - start, type(connector).gets))
        (f_time, f_gets), (n_time, n_gets) = row
        print(f"{seconds:5.1f}s | {f_time:7.2f} s to result, {f_gets:3d} gets | "
              f"{n_time:7.2f} s to result, {n_gets:3d} gets | {f_time / n_time:5.1f}x")
    print(f"Ctrl-C during a 20 s job: Flyte 2 local runner: {interrupted('flyte')}")
    print(f"Ctrl-C during a 20 s job: connector_nb:         {interrupted('nb')}")


if __name__ == "__main__":
    main()
