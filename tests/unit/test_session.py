"""Session and Run behaviour against scripted fake connectors (in-process transport, real engine thread)."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest

from connector_nb import ConnectorRegistry, PollPolicy, Resource, Session
from connector_nb.errors import (
    ConnectorCallError,
    EngineError,
    InputError,
    MetadataError,
    NotSupportedError,
    PollingStoppedError,
    SessionClosedError,
    UnknownTaskTypeError,
)
from connector_nb.session import AsyncSession
from connector_nb.testing import BlockingFakeConnector, FakeConnector, fast_policy, phases, wait_until


@pytest.fixture
def make_session(tmp_path):
    sessions = []

    def make(*connectors, **options):
        registry = ConnectorRegistry(connectors)
        options.setdefault("poll", fast_policy())
        session = Session(registry=registry, output_dir=str(tmp_path), **options)
        sessions.append(session)
        return session

    yield make
    for s in sessions:
        s.close()


def test_launch_polls_to_success_and_records_transitions(make_session):
    fake = FakeConnector(script=["RUNNING", "RUNNING", "SUCCEEDED"])
    session = make_session(fake)
    run = session.launch("fake")
    resource = run.wait(timeout=10)
    assert resource.phase == "SUCCEEDED" == run.phase
    assert phases(run.transitions) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert run.get_calls == 3 and run.done and run.ended_at is not None
    assert [m for m, _ in fake.calls] == ["create", "get", "get", "get"]
    frame = run.timeline()
    assert list(frame["phase"]) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert (frame["duration_s"] >= 0).all()


def test_many_runs_at_once_are_independent(make_session):
    fake = FakeConnector(script=["RUNNING", "RUNNING", "SUCCEEDED"])
    session = make_session(fake)
    runs = session.launch_many("fake", [{} for _ in range(200)])
    for run in runs:
        run.wait(timeout=20)
    assert {r.phase for r in runs} == {"SUCCEEDED"}
    assert len({r.run_id for r in runs}) == 200
    assert session.counts() == {"SUCCEEDED": 200}
    assert len(session.runs_frame()) == 200


def test_unknown_task_type_lists_registered(make_session):
    session = make_session(FakeConnector(), FakeConnector("other", task_type_version=2))
    with pytest.raises(UnknownTaskTypeError, match=r"'nope'.*registered: fake \(v0\), other \(v2\)"):
        session.launch("nope")
    with pytest.raises(UnknownTaskTypeError, match="version 1"):
        session.launch("fake", version=1)


def test_inputs_are_checked_against_the_interface(make_session):
    fake = FakeConnector(input_types={"n": int, "label": str})
    session = make_session(fake)
    with pytest.raises(InputError, match="'count'"):
        session.launch("fake", {"n": 1, "label": "x", "count": 3})
    with pytest.raises(InputError, match="'n'"):
        session.launch("fake", {"n": "three", "label": "x"})
    with pytest.raises(InputError, match="label"):
        session.launch("fake", {"n": 1})
    run = session.launch("fake", n=3, label="ok")
    run.wait(timeout=10)
    assert fake.created == {"job-1": {"n": 3, "label": "ok"}}
    assert run.inputs == {"n": 3, "label": "ok"}


def test_create_error_raises_and_session_keeps_working(make_session):
    bad = FakeConnector("bad", raises={"create": RuntimeError("quota exceeded")})
    session = make_session(bad, FakeConnector())
    with pytest.raises(ConnectorCallError, match=r"'bad' failed in create\(\): RuntimeError: quota exceeded") as info:
        session.launch("bad")
    assert isinstance(info.value.original, RuntimeError)
    assert session.runs == []
    assert session.launch("fake").wait(timeout=10).phase == "SUCCEEDED"


def test_transient_get_errors_are_retried(make_session):
    fake = FakeConnector(script=[ConnectionError("blip"), ConnectionError("blip"), "RUNNING", "SUCCEEDED"])
    run = make_session(fake).launch("fake")
    assert run.wait(timeout=10).phase == "SUCCEEDED"
    assert run.get_calls == 2  # successful gets only
    assert [m for m, _ in fake.calls].count("get") == 4


def test_persistent_get_errors_stop_polling_visibly_without_hurting_others(make_session):
    broken = FakeConnector("broken", script=[ValueError("backend exploded")])
    session = make_session(broken, FakeConnector())
    bad_run = session.launch("broken", poll=fast_policy(max_get_errors=3))
    good_run = session.launch("fake")
    with pytest.raises(PollingStoppedError, match="3 consecutive get errors.*backend exploded"):
        bad_run.wait(timeout=10)
    assert isinstance(bad_run.error, ConnectorCallError) and isinstance(bad_run.error.original, ValueError)
    assert bad_run.done and bad_run.phase == "QUEUED"
    assert [m for m, _ in broken.calls].count("get") == 3
    assert good_run.wait(timeout=10).phase == "SUCCEEDED"


def test_resume_after_polling_stopped(make_session):
    fake = FakeConnector(script=[ValueError("x"), ValueError("x"), "SUCCEEDED"])
    run = make_session(fake).launch("fake", poll=fast_policy(max_get_errors=2))
    with pytest.raises(PollingStoppedError):
        run.wait(timeout=10)
    run.resume()
    assert run.wait(timeout=10).phase == "SUCCEEDED"


def test_retryable_failed_ends_polling(make_session):
    fake = FakeConnector(script=["RUNNING", Resource(phase="RETRYABLE_FAILED", message="throttled")])
    run = make_session(fake).launch("fake")
    resource = run.wait(timeout=10)
    assert resource.phase == "RETRYABLE_FAILED" and resource.message == "throttled"
    calls = len(fake.calls)
    assert run.done and run._poller is None  # no poller left: it does not spin
    run.session.submit(asyncio.sleep(0)).result(timeout=10)  # let the engine loop turn once more
    assert len(fake.calls) == calls


def test_failed_phase_keeps_message(make_session):
    fake = FakeConnector(script=[Resource(phase="FAILED", message="OOM killed")])
    run = make_session(fake).launch("fake")
    assert run.wait(timeout=10).phase == "FAILED"
    assert run.message == "OOM killed" and run.transitions[-1].message == "OOM killed"


def test_cancel_calls_delete_once_and_is_idempotent(make_session):
    fake = FakeConnector(script=["RUNNING"])
    run = make_session(fake).launch("fake")
    wait_until(lambda: run.phase == "RUNNING", what="RUNNING")
    run.cancel()
    run.cancel()
    assert run.phase == "ABORTED" and run.done
    assert [m for m, _ in fake.calls].count("delete") == 1
    assert run.wait(timeout=1).phase == "ABORTED"


def test_cancel_error_is_raised_and_polling_continues(make_session):
    fake = FakeConnector(script=["RUNNING", "RUNNING", "RUNNING", "SUCCEEDED"], raises={"delete": OSError("denied")})
    run = make_session(fake).launch("fake")
    with pytest.raises(ConnectorCallError, match="delete.*denied"):
        run.cancel()
    assert run.wait(timeout=10).phase == "SUCCEEDED"


def test_timeout_cancels_the_run(make_session):
    fake = FakeConnector(script=["RUNNING"])
    run = make_session(fake).launch("fake", poll=fast_policy(timeout=0.2))
    assert run.wait(timeout=10).phase == "ABORTED"
    assert "timed out after 0.2 s" in run.message
    assert fake.deleted == {"job-1"}


def test_metrics_frame_and_paginated_logs(make_session):
    fake = FakeConnector(logs=[["a", "b"], ["c"]])
    run = make_session(fake).launch("fake")
    run.wait(timeout=10)
    frame = run.metrics()
    assert list(frame.columns) == ["metric", "timestamp", "value", "job"]
    assert list(frame["value"]) == [0.0, 1.5, 3.0] and set(frame["job"]) == {"job-1"}
    logs = run.logs()
    assert logs == "a\nb\nc" and logs.lines == ["a", "b", "c"]
    assert [m for m, _ in fake.calls].count("get_logs") == 2


class _Minimal(FakeConnector):
    get_metrics = FakeConnector.__mro__[1].get_metrics  # back to the base: not implemented
    get_logs = FakeConnector.__mro__[1].get_logs


def test_metrics_and_logs_not_supported(make_session):
    run = make_session(_Minimal("minimal")).launch("minimal")
    run.wait(timeout=10)
    with pytest.raises(NotSupportedError, match="'minimal' connector has no metrics"):
        run.metrics()
    with pytest.raises(NotSupportedError, match="has no logs"):
        run.logs()


def test_outputs_are_python_values(make_session):
    fake = FakeConnector(outputs={"rows": 3, "names": ["a", "b"]})
    run = make_session(fake).launch("fake")
    run.wait(timeout=10)
    assert run.outputs == {"rows": 3, "names": ["a", "b"]}


def test_outputs_from_a_literal_map(make_session):
    from connector_nb.literals import to_literal_map

    fake = FakeConnector(outputs=to_literal_map({"total": 2.5}))
    run = make_session(fake).launch("fake")
    run.wait(timeout=10)
    assert run.outputs == {"total": 2.5}


def test_malformed_resource_meta_is_a_clear_error(make_session):
    run = make_session(FakeConnector(script=["RUNNING"]), poll=fast_policy(max_get_errors=1)).launch("fake")
    run.resource_meta = b"\x00not json"
    with pytest.raises(MetadataError, match="malformed FakeMeta bytes"):
        run.refresh()
    run.resource_meta = b'{"nope": 1}'
    with pytest.raises(MetadataError, match="expected fields: job_id"):
        run.refresh()


def test_blocking_connector_does_not_stall_the_loop(make_session):
    slow = BlockingFakeConnector("slow", script=["RUNNING", "SUCCEEDED"], block=1.5)
    fast = FakeConnector(script=["RUNNING", "RUNNING", "RUNNING", "SUCCEEDED"])
    session = make_session(slow, fast)
    slow_run = session.launch("slow")
    fast_run = session.launch("fake")
    fast_run.wait(timeout=10)
    # The fast run finished several polls while the slow one was still inside its first blocking get.
    assert fast_run.get_calls == 4 and slow_run.get_calls == 0
    assert slow_run.wait(timeout=10).phase == "SUCCEEDED"


def test_step_mode_polls_only_on_refresh(make_session):
    fake = FakeConnector(script=["RUNNING", "RUNNING", "SUCCEEDED"])
    run = make_session(fake).launch("fake", autopoll=False)
    assert run._poller is None and run.get_calls == 0  # nothing polls a step-mode run
    with pytest.raises(EngineError, match="step mode"):
        run.wait(timeout=1)
    run.refresh()
    run.refresh()
    assert phases(run.transitions) == ["QUEUED", "RUNNING", "RUNNING"]
    assert run.transitions[-1].resource is not None and run.transitions[-1].resource.message == "running (get #2)"
    run.refresh()
    assert run.phase == "SUCCEEDED" and run.done


def test_transitions_carry_log_links_and_custom_info(make_session):
    running = Resource(phase="RUNNING", log_links=[("console", "http://example.invalid/1")], custom_info={"k": 1})
    run = make_session(FakeConnector(script=[running, "SUCCEEDED"])).launch("fake")
    run.wait(timeout=10)
    t = run.transitions[1]
    assert t.log_links[0].uri == "http://example.invalid/1" and t.custom_info == {"k": 1}


def test_blocking_on_the_engine_loop_is_detected(make_session):
    fake = FakeConnector(script=["RUNNING", "RUNNING", "SUCCEEDED"])
    session = make_session(fake)
    seen: list[BaseException] = []

    awaitables: list[object] = []

    def observer(run):
        # On the engine loop a Run method hands back an awaitable; a blocking Session call would deadlock.
        refresh = run.refresh()
        awaitables.append(refresh)
        refresh.close()
        try:
            session.connectors()
        except EngineError as e:
            seen.append(e)

    unsubscribe = session.on_change(observer)
    run = session.launch("fake")
    wait_until(lambda: seen, what="the observer to run")
    unsubscribe()
    run.wait(timeout=10)
    assert "deadlock" in str(seen[0])
    assert all(asyncio.iscoroutine(a) for a in awaitables)


async def test_await_run_from_a_running_loop_does_not_block_it(make_session):
    session = make_session(FakeConnector(script=["RUNNING", "RUNNING", "SUCCEEDED"]))
    run = session.launch("fake")
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    resource = await run
    task.cancel()
    assert resource.phase == "SUCCEEDED"
    assert ticks > 0  # this loop kept running while we awaited


async def test_async_session_on_the_callers_loop():
    async with AsyncSession(registry=ConnectorRegistry([FakeConnector()]), poll=fast_policy()) as session:
        runs = await asyncio.gather(*(session.launch("fake") for _ in range(20)))
        results = await asyncio.gather(*(r.wait_async(timeout=10) for r in runs))
        assert {r.phase for r in results} == {"SUCCEEDED"}
        # On its own loop every Run method is awaitable: one API for both sessions.
        assert (await runs[0].wait()).phase == "SUCCEEDED"
        assert "hello" in await runs[0].logs()
        assert len(await runs[0].metrics()) == 3
        await runs[0].cancel()  # finished: a no-op
        assert runs[0].session is session
    with pytest.raises(SessionClosedError):
        await session.launch("fake")


def test_close_stops_the_engine_without_leaks(tmp_path):
    before = {t.name for t in threading.enumerate()}
    session = Session(registry=ConnectorRegistry([FakeConnector(script=["RUNNING"]),
                                                  BlockingFakeConnector("slow", script=["RUNNING"], block=0.01)]),
                      poll=fast_policy(), output_dir=str(tmp_path))
    runs = [session.launch("fake") for _ in range(5)] + [session.launch("slow") for _ in range(3)]
    wait_until(lambda: all(r.get_calls for r in runs), what="polls")
    loop = session._loop
    session.close(cancel_running=True)
    assert all(r.phase == "ABORTED" for r in runs)
    assert loop.is_closed()
    wait_until(lambda: {t.name for t in threading.enumerate()} <= before, timeout=10, what="threads to end")
    with pytest.raises(SessionClosedError):
        session.launch("fake")


def test_engine_is_shared_and_released_by_the_last_session(tmp_path):
    registry = ConnectorRegistry([FakeConnector()])
    a = Session(registry=registry, output_dir=str(tmp_path))
    b = Session(registry=registry, output_dir=str(tmp_path))
    assert a._loop is b._loop
    a.close()
    assert b.launch("fake").wait(timeout=10).phase == "SUCCEEDED"
    b.close()
    assert b._loop.is_closed()


def test_a_raising_observer_does_not_stop_polling(make_session):
    session = make_session(FakeConnector(script=["RUNNING", "SUCCEEDED"]))
    session.on_change(lambda run: 1 / 0)
    assert session.launch("fake").wait(timeout=10).phase == "SUCCEEDED"


def test_get_run_names_known_runs(make_session):
    session = make_session(FakeConnector())
    run = session.launch("fake")
    assert session.get_run(run.run_id) is run
    with pytest.raises(LookupError, match="no run 'zzz'.*" + run.run_id):
        session.get_run("zzz")


def test_poll_policy_validation_and_growth():
    with pytest.raises(ValueError, match="growth must be >= 1"):
        PollPolicy(growth=0.5)
    with pytest.raises(ValueError, match="jitter"):
        PollPolicy(jitter=1.5)
    policy = PollPolicy()
    elapsed, interval, gets = 0.0, None, 0
    while elapsed < 20:
        interval = policy.next_interval(interval)
        elapsed += interval
        gets += 1
    assert gets <= 15  # a 20 s job costs at most ~15 gets with the defaults
    assert policy.backoff(1) < policy.backoff(3) <= policy.max_interval


def test_secrets_never_reach_errors_or_reprs(make_session):
    from connector_nb.errors import ConnectorCallError

    class Leaky(FakeConnector):
        async def create(self, task_template, output_prefix, inputs=None, **kwargs):
            raise RuntimeError(f"login failed for password {inputs['db_password']}")

    session = make_session(Leaky("leaky", input_types={"db_password": str, "n": int}))
    with pytest.raises(ConnectorCallError) as info:
        session.launch("leaky", db_password="hunter2-secret", n=1)
    assert "hunter2-secret" not in str(info.value) and "••••" in str(info.value)
    assert "hunter2-secret" not in str(info.value.original)
    with pytest.raises(InputError) as info:
        session.launch("leaky", db_password=12345678, n=1)
    assert "12345678" not in str(info.value) and "db_password" in str(info.value)


def test_journal_records_transitions_redacted_and_reattaches(tmp_path):
    path = tmp_path / "journal.sqlite3"
    fake = FakeConnector(script=["RUNNING", "RUNNING", "RUNNING", "RUNNING", "SUCCEEDED"],
                         input_types={"api_token": str, "n": int})
    registry = ConnectorRegistry([fake])
    with Session(registry=registry, poll=fast_policy(), journal=str(path), output_dir=str(tmp_path)) as first:
        run = first.launch("fake", api_token="s3cr3t-value", n=2, autopoll=False)
        run.refresh()
        row = first.journal.get(run.run_id)
        assert row["phase"] == "RUNNING" and row["inputs"]["n"] == 2 and "s3cr3t-value" not in str(row["inputs"])
    assert b"s3cr3t-value" not in path.read_bytes()
    # A new session (a restarted kernel) picks the run up from the journal and polls it to the end.
    with Session(registry=registry, poll=fast_policy(), journal=str(path), output_dir=str(tmp_path)) as second:
        again = second.reattach(run.run_id)
        assert again.wait(timeout=10).phase == "SUCCEEDED"
        assert second.journal.get(run.run_id)["phase"] == "SUCCEEDED"
        assert list(second.journal.frame()["run_id"]) == [run.run_id]
        history = [t["phase"] for t in second.journal.get(run.run_id)["transitions"]]
        assert history[:2] == ["QUEUED", "RUNNING"] and history[-1] == "SUCCEEDED"  # appended, never rewritten
        assert second.reattach(run.run_id) is again  # the same Run, not a second one
        with pytest.raises(LookupError, match="nope.*" + run.run_id):
            second.reattach("nope")


@pytest.mark.parametrize("method", ["get_metrics", "get_logs"])
def test_connector_raising_in_metrics_or_logs_is_a_clear_error(make_session, method):
    fake = FakeConnector(raises={method: KeyError("series")})
    run = make_session(fake).launch("fake")
    run.wait(timeout=10)
    call = run.metrics if method == "get_metrics" else run.logs
    with pytest.raises(ConnectorCallError, match=rf"'fake' failed in {method}\(\): KeyError: 'series'"):
        call()
    assert run.phase == "SUCCEEDED"  # the run itself is untouched


def test_connector_returning_the_wrong_type_is_named(make_session):
    class Wrong(FakeConnector):
        async def get(self, resource_meta, **kwargs):
            return {"phase": "RUNNING"}

    run = make_session(Wrong("wrong"), poll=fast_policy(max_get_errors=1)).launch("wrong")
    with pytest.raises(PollingStoppedError, match="returned dict; expected a Resource"):
        run.wait(timeout=10)


async def test_session_as_async_context_manager(tmp_path):
    async with Session(registry=ConnectorRegistry([FakeConnector()]), poll=fast_policy(),
                       output_dir=str(tmp_path)) as session:
        run = session.launch("fake")
        assert (await run).phase == "SUCCEEDED"
    assert session.closed and session._loop.is_closed()


def test_debug_opens_the_connectors_traceback(make_session, monkeypatch):
    import pdb

    seen = []
    monkeypatch.setattr(pdb, "post_mortem", lambda tb: seen.append(tb))
    fake = FakeConnector(script=[ZeroDivisionError("bad maths")])
    run = make_session(fake).launch("fake", poll=fast_policy(max_get_errors=1))
    with pytest.raises(PollingStoppedError):
        run.wait(timeout=10)
    run.debug()
    frames = []
    tb = seen[0]
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[-1] == "_step"  # the connector's own frame, where the error was raised
    ok = make_session(FakeConnector("ok")).launch("ok")
    ok.wait(timeout=10)
    with pytest.raises(Exception, match="has no error to debug"):
        ok.debug()


def test_reattach_keeps_inputs_start_and_history_and_never_reopens_a_finished_run(tmp_path):
    from connector_nb.examples import CONNECTORS

    path = str(tmp_path / "journal.sqlite3")
    secretive = FakeConnector("secretive", script=["RUNNING"], input_types={"api_key": str, "n": int})
    registry = ConnectorRegistry([secretive, *CONNECTORS])
    with Session(registry=registry, poll=fast_policy(), journal=path, output_dir=str(tmp_path)) as first:
        live = first.launch("secretive", api_key="k3y-value-123", n=3)
        sleeper = first.launch("sleep", seconds=30)
        wait_until(lambda: live.phase == "RUNNING", what="RUNNING")
        done = first.launch("sleep", seconds=30)
        done.cancel()
        started, history = live.started_at, phases(live.transitions)
    # a new session (a new kernel) on the same journal
    with Session(registry=registry, poll=fast_policy(), journal=path, output_dir=str(tmp_path)) as second:
        again = second.reattach(live.run_id)
        assert again.started_at == started and phases(again.transitions)[: len(history)] == history
        assert again.inputs["n"] == 3 and again.inputs["api_key"] != "k3y-value-123"
        cancelled = second.reattach(done.run_id)
        assert cancelled.phase == "ABORTED" and cancelled.done and cancelled._poller is None  # not reopened
        second.reattach(sleeper.run_id).cancel()
    with Session(registry=registry, poll=fast_policy(), journal=path, output_dir=str(tmp_path)) as third:
        # the cancellation is the external system's state too (sleep keeps it on disk): never SUCCEEDED later
        assert third.reattach(sleeper.run_id).phase == "ABORTED"


def test_a_session_leaves_no_scratch_folder_behind(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp makes scratch folders
    with Session(poll=fast_policy()) as listing:
        listing.connectors()
    assert list(tmp_path.glob("connector-nb-*")) == []  # nothing made when nothing needs an output location
    with Session(poll=fast_policy()) as session:
        session.launch("sleep", seconds=0.05).wait(timeout=10)
        assert len(list(tmp_path.glob("connector-nb-*"))) == 1
    assert list(tmp_path.glob("connector-nb-*")) == []  # removed on close


def test_retention_keeps_memory_bounded_and_history_reads_the_journal(tmp_path):
    fake = FakeConnector(script=["SUCCEEDED"])
    with Session(registry=ConnectorRegistry([fake]), poll=fast_policy(), journal=str(tmp_path / "j.sqlite3"),
                 output_dir=str(tmp_path), retain=5) as session:
        runs = [session.launch("fake") for _ in range(20)]
        for run in runs:
            run.wait(timeout=10)
        wait_until(lambda: len(session.runs) <= 5, what="retention")
        assert [r.run_id for r in session.runs] == [r.run_id for r in runs[-5:]]
        frame = session.runs_frame(history=True)
        assert set(frame["run_id"]) == {r.run_id for r in runs} and set(frame["phase"]) == {"SUCCEEDED"}
        assert len(session.runs_frame()) == 5


def test_run_ids_are_unique_and_sort_by_launch_time(make_session):
    session = make_session(FakeConnector())
    ids = [session.new_run_id("fake") for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"fake-[0-9a-f]{24}", i) for i in ids)
    first_ms = int(ids[-1][5:16], 16)
    wait_until(lambda: time.time_ns() // 1_000_000 > first_ms)  # the next millisecond
    later = session.new_run_id("fake")
    assert later > max(ids)  # the journal's keys grow at one end, so its writes stay fast as it grows
