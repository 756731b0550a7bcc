"""CreateTask is sent at most once (issue 8, item 1), against a real ``connector-nb serve`` subprocess that is
killed with SIGKILL mid-create and restarted on the same port. Jobs are counted on the service side."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flyteidl.admin import agent_pb2

sys.path.insert(0, str(Path(__file__).parent))
from flyte2_env import wait_health
from flytekit_env import free_port, stop_process

from connector_nb.errors import CreateOutcomeUnknownError, ServiceUnavailableError
from connector_nb.session import Session
from connector_nb.template import task_template
from connector_nb.testing import wait_until
from connector_nb.transports.base import TaskCategory
from connector_nb.transports.grpc import GrpcTransport

pytestmark = pytest.mark.timeout(600)
HERE = Path(__file__).resolve().parent
CLI = Path(sys.executable).parent / "connector-nb"


class Service:
    """``connector-nb serve --modules slow_create_module.py`` on 127.0.0.1:port, restartable on that port."""

    def __init__(self, tmp: Path) -> None:
        self.port, self.tmp = free_port(), tmp
        self.created = tmp / "created.txt"
        self.created.touch()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        log = self.tmp / "serve.log"
        with log.open("a") as out:
            self.proc = subprocess.Popen(
                [str(CLI), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--modules",
                 str(HERE / "slow_create_module.py")],
                env={**os.environ, "SLOW_CREATE_LOG": str(self.created)}, stdout=out, stderr=subprocess.STDOUT,
            )
        wait_health(self.port, self.proc, log)
        return self

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, the in-flight create dies with the process."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc)

    def jobs(self) -> list[str]:
        """Run ids of every create that reached the service."""
        return self.created.read_text().split()

    @property
    def target(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"


@pytest.fixture
def service(tmp_path):
    svc = Service(tmp_path).start()
    yield svc
    svc.stop()


def _killed_mid_create(session: Session, service: Service, pool: ThreadPoolExecutor) -> CreateOutcomeUnknownError:
    """Launch a slow create, SIGKILL the service once the create has reached it; return the launch's error."""
    before = len(service.jobs())
    pending = pool.submit(session.launch, "slow_create", seconds=2.0)
    wait_until(lambda: len(service.jobs()) == before + 1, timeout=60, what="the create to reach the service")
    service.kill()
    with pytest.raises(CreateOutcomeUnknownError) as info:
        pending.result(timeout=120)
    return info.value


def test_create_killed_mid_call_is_never_resent(service):
    errors, runs = [], []
    with Session(service.target, timeout=30.0) as session, ThreadPoolExecutor(2) as pool:
        session.connectors()
        errors.append(_killed_mid_create(session, service, pool))
        # Launched while the service is down: it never left, so it may wait for the restart and go out once.
        pending = pool.submit(session.launch, "slow_create", seconds=0.1)
        service.start()
        runs.append(pending.result(timeout=120))
        errors.append(_killed_mid_create(session, service, pool))
        service.start()
        runs += [session.launch("slow_create", seconds=0.1) for _ in range(2)]
        assert [run.wait(60).phase for run in runs] == ["SUCCEEDED"] * 3
    launches, jobs = len(errors) + len(runs), service.jobs()
    print(f"\nat-most-once: {launches} launches, {len(jobs)} jobs created on the service, "
          f"{len(errors)} outcome-unknown errors")
    assert len(jobs) <= launches and len(set(jobs)) == len(jobs)  # no run id was ever created twice
    for error in errors:  # the error names the run id, and that is the job the service did receive
        assert error.run_id in jobs and repr(error.run_id) in str(error) and error.task_type == "slow_create"
        assert "may exist" in str(error) and "not re-sent" in str(error)
    assert sorted(run.run_id for run in runs) == sorted(set(jobs) - {e.run_id for e in errors})


def test_create_past_its_deadline_is_outcome_unknown(service):
    with Session(service.target, timeout=1.0) as session:
        with pytest.raises(CreateOutcomeUnknownError, match="DEADLINE_EXCEEDED") as info:
            session.launch("slow_create", seconds=5.0)
    assert service.jobs() == [info.value.run_id]


def test_create_with_no_service_is_not_sent(tmp_path):
    async def attempt() -> None:
        transport = GrpcTransport(f"grpc://127.0.0.1:{free_port()}", protocol="v1", timeout=1.0, retries=0)
        try:
            await transport.create(task_template("slow_create"), agent_pb2.CreateTaskRequest().inputs, "/tmp/x")
        finally:
            await transport.aclose()

    import asyncio

    with pytest.raises(ServiceUnavailableError, match=r"no connection within 1 s; create\(\) was not sent"):
        asyncio.run(attempt())


async def test_get_from_a_frozen_service_is_unavailable(service):
    """A service that stops answering (SIGSTOP) is unreachable, not a connector failure or a connector timeout."""
    from slow_create_module import SlowMeta

    transport = GrpcTransport(service.target, timeout=1.0, retries=0)
    meta = SlowMeta("r1").encode()
    try:
        assert (await transport.get(TaskCategory("slow_create"), meta)).message == "r1"
        assert service.proc is not None
        os.kill(service.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(ServiceUnavailableError, match=r"did not answer get\(\) within 1 s"):
                await transport.get(TaskCategory("slow_create"), meta)
        finally:
            os.kill(service.proc.pid, signal.SIGCONT)
        assert (await transport.get(TaskCategory("slow_create"), meta)).message == "r1"
    finally:
        await transport.aclose()
