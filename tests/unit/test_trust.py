"""The fault matrix: hung, raising, slow and odd connectors, each beside healthy runs that must all succeed.

Real threads and real deadlines; no test asserts a wall-clock time.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from connector_nb import ConnectorRegistry, Resource, Session
from connector_nb.errors import CallTimeoutError, PollingStoppedError
from connector_nb.testing import FakeConnector, FakeMeta, fast_policy, phases, wait_until
from connector_nb.transports import MockTransport, Request


class HungSync(FakeConnector):
    """``get`` blocks its worker thread until the test releases it (a connector stuck in a blocking SDK call)."""

    def __init__(self, release: threading.Event, **kwargs: Any) -> None:
        super().__init__("hung_sync", **kwargs)
        self.release = release

    def get(self, resource_meta: FakeMeta, **kwargs: Any) -> Resource:  # type: ignore[override]
        self.release.wait()
        return Resource(phase="RUNNING")


class HungAsync(FakeConnector):
    """``get`` awaits forever."""

    async def get(self, resource_meta: FakeMeta, **kwargs: Any) -> Resource:  # type: ignore[override]
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class SlowDelete(FakeConnector):
    """``delete`` blocks until released."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__("slow_delete", script=["RUNNING"])
        self.release = release

    def delete(self, resource_meta: FakeMeta, **kwargs: Any) -> None:  # type: ignore[override]
        self.release.wait()


@pytest.fixture
def release():
    event = threading.Event()
    yield event
    event.set()  # let hung worker threads finish


@pytest.fixture
def session_with(tmp_path):
    made: list[Session] = []

    def make(*connectors: Any, **policy: Any) -> Session:
        registry = ConnectorRegistry([FakeConnector("healthy"), *connectors])
        session = Session(registry=registry, poll=fast_policy(**policy), output_dir=str(tmp_path), journal=False)
        made.append(session)
        return session

    yield make
    for session in made:
        session.close(timeout=1)


def _healthy_all_succeed(session: Session, n: int = 5) -> None:
    runs = [session.launch("healthy") for _ in range(n)]
    assert {r.wait(timeout=30).phase for r in runs} == {"SUCCEEDED"}


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_hung_get_without_run_timeout_is_an_error_on_the_run(kind, release, session_with):
    hung = HungSync(release) if kind == "sync" else HungAsync("hung_async")
    session = session_with(hung, call_timeout=0.2, max_get_errors=2)
    run = session.launch(hung.task_type_name)
    _healthy_all_succeed(session)
    with pytest.raises(PollingStoppedError, match="consecutive get errors"):
        run.wait(timeout=30)
    assert isinstance(run.error, CallTimeoutError) and "did not return within 0.2 s" in str(run.error)
    assert run.live  # the job may still be running: it is not marked finished
    run.cancel(timeout=5)
    assert run.phase == "ABORTED"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_run_timeout_fires_while_get_hangs(kind, release, session_with):
    hung = HungSync(release) if kind == "sync" else HungAsync("hung_async")
    session = session_with(hung, timeout=0.5)  # call_timeout stays at its 30 s default
    run = session.launch(hung.task_type_name)
    _healthy_all_succeed(session)
    assert run.wait(timeout=30).phase == "ABORTED"
    assert "timed out after 0.5 s" in run.message
    assert ("delete", next(iter(hung.created), "")) in hung.calls or any(c[0] == "delete" for c in hung.calls)


def test_forty_hung_sync_gets_starve_neither_launch_nor_other_runs(release, session_with):
    hung = HungSync(release)
    session = session_with(hung, call_timeout=0.3)
    stuck = [session.launch("hung_sync") for _ in range(40)]  # more than the 32 worker slots
    wait_until(lambda: all(r.error is not None for r in stuck), timeout=60, what="every hung get to time out")
    _healthy_all_succeed(session, 10)
    sync_ok = FakeConnector("fine")
    session.registry.register(sync_ok)
    assert session.launch("fine").wait(timeout=30).phase == "SUCCEEDED"
    session.cancel_all(timeout=5)
    assert all(r.phase == "ABORTED" for r in stuck)


def test_hung_worker_threads_are_daemons_so_the_interpreter_can_exit(release, session_with):
    session = session_with(HungSync(release), call_timeout=0.2)
    run = session.launch("hung_sync")
    wait_until(lambda: run.error is not None, what="the hung get to time out")
    workers = [t for t in threading.enumerate() if t.name.startswith("connector-nb-worker")]
    assert workers and all(t.daemon for t in workers)


def test_slow_delete_does_not_hold_cancel_or_close_past_their_deadline(release, session_with):
    session = session_with(SlowDelete(release))
    run = session.launch("slow_delete")
    wait_until(lambda: run.phase == "RUNNING", what="RUNNING")
    with pytest.raises(CallTimeoutError, match="delete"):
        run.cancel(timeout=0.2)
    assert isinstance(run.error, CallTimeoutError) and run.live  # reported on the run, still watched
    wait_until(lambda: run._poller is not None and run.get_calls > 0, what="polling to go on")
    other = session.launch("slow_delete")
    session.close(cancel_running=True, timeout=0.2)  # returns although delete hangs
    assert other.live and isinstance(other.error, CallTimeoutError)


def test_backwards_and_after_terminal_phases_are_kept_and_flagged(session_with):
    odd = FakeConnector("odd", script=["RUNNING", "QUEUED", "RUNNING", "SUCCEEDED"])
    session = session_with(odd)
    run = session.launch("odd")
    assert run.wait(timeout=30).phase == "SUCCEEDED"
    assert phases(run.transitions) == ["QUEUED", "RUNNING", "QUEUED", "RUNNING", "SUCCEEDED"]
    assert [t.flag for t in run.transitions] == ["", "", "backwards", "", ""]
    assert run.flags == ["RUNNING -> QUEUED (backwards)"]
    assert list(run.timeline()["flag"]) == ["", "", "backwards", "", ""]
    odd.script = ["RUNNING"]  # a terminal run that the connector reports live again is not reopened
    run.refresh()
    assert run.phase == "SUCCEEDED" and run.transitions[-1].flag == "after terminal"
    assert run.flags[-1] == "SUCCEEDED -> RUNNING (after terminal)"


def test_raise_in_each_method_leaves_other_runs_alone(session_with):
    methods = ["create", "get", "delete", "get_metrics", "get_logs"]
    broken = [FakeConnector(f"broken_{m}", script=["RUNNING"] if m == "delete" else ["RUNNING", "SUCCEEDED"],
                            raises={m: RuntimeError(f"boom in {m}")}) for m in methods]
    session = session_with(*broken, max_get_errors=1)
    for m, connector in zip(methods, broken):
        if m == "create":
            with pytest.raises(Exception, match="boom in create"):
                session.launch(connector.task_type_name)
            continue
        run = session.launch(connector.task_type_name)
        if m == "get":
            with pytest.raises(PollingStoppedError, match="boom in get"):
                run.wait(timeout=30)
        elif m == "delete":
            with pytest.raises(Exception, match="boom in delete"):
                run.cancel()
            assert run.live and "boom in delete" in str(run.error)
        else:
            run.wait(timeout=30)
            with pytest.raises(Exception, match=f"boom in {m}"):
                (run.metrics if m == "get_metrics" else run.logs)()
        _healthy_all_succeed(session, 2)


def test_mock_transport_answers_sync_or_async_handlers():
    async def slow_get(request: Request) -> Any:
        await asyncio.sleep(0)
        return Resource(phase="SUCCEEDED", outputs={"n": 3})

    def handler(request: Request) -> Any:
        if request.method == "create":
            return b'{"job_id": "1"}'
        if request.method == "get":
            return slow_get(request)
        if request.method == "get_logs":
            return ["one", "two"]
        return None

    transport = MockTransport(handler)
    with Session(transport, journal=False) as session:
        run = session.launch("anything", n=1)
        assert run.wait(timeout=30).phase == "SUCCEEDED" and run.outputs == {"n": 3}
        assert run.logs().lines == ["one", "two"]
    assert [c.method for c in transport.calls][:2] == ["create", "get"]
    assert transport.calls[0].category is not None and transport.calls[0].category.name == "anything"
