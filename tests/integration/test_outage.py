"""Service outages: polling never ends while a connector service is down, and a service that never comes up
fails the launch with a clear error."""

from __future__ import annotations

import socket
import time

import pytest
from test_grpc import _registry

from connector_nb import PollPolicy, Session
from connector_nb.errors import ServiceUnavailableError
from connector_nb.server import serve
from connector_nb.testing import wait_until

#: The old code ended polling after about this many seconds of outage (retries x max_get_errors).
OLD_LIMIT = 20.0


@pytest.mark.timeout(180)
def test_an_outage_longer_than_the_old_limit_never_ends_polling():
    first = serve(_registry(), port=0, block=False)
    port, second = first.port, None
    policy = PollPolicy(max_get_errors=2, error_backoff=0.05, max_interval=1.0)
    try:
        with Session(first.target, poll=policy, timeout=2.0, journal=False) as session:
            run = session.launch("fake_job", seconds=1.0)
            first.stop()
            wait_until(lambda: run.unreachable_since is not None, timeout=30, what="the run to see the outage")
            down = time.monotonic()
            wait_until(lambda: time.monotonic() - down > OLD_LIMIT + 1, timeout=OLD_LIMIT + 30,
                       what="an outage longer than the old limit")
            assert run.live and not run.done and run._poller is not None
            assert run.polling_error is None and "unreachable since" in run.message
            second = serve(_registry(), port=port, block=False)
            assert run.wait(60).phase == "SUCCEEDED"  # it resumed by itself
            assert run.unreachable_since is None and run.outputs == {"answer": 42}
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_a_service_that_never_comes_up_fails_the_launch_clearly():
    with socket.socket() as s:  # a free loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Session(f"grpc://127.0.0.1:{port}", timeout=1.0, retries=2, journal=False) as session:
        with pytest.raises(ServiceUnavailableError, match=f"127.0.0.1:{port}"):
            session.launch("fake_job", seconds=1.0)
        assert session.runs == []


async def test_async_forms_from_the_callers_loop_keep_one_channel_per_session():
    """``await run.logs_async()`` from the kernel's loop runs on the session's loop: no second gRPC channel."""
    handle = serve(_registry(), port=0, block=False)
    try:
        with Session(handle.target, journal=False) as session:
            run = session.launch("fake_job", seconds=0.2)
            channel = session.transport._channel
            assert channel is not None
            logs = await run.logs_async()  # awaited on this test's loop, not the engine's
            await run.wait_async(timeout=30)
            metrics = await run.metrics_async()
            assert logs.lines[:3] == ["line 1", "line 2", "line 3"] and len(metrics) == 1
            assert session.transport._channel is channel  # still the one channel
            assert run.session is session
    finally:
        handle.stop()
