"""The pytest plugin that downstream connector authors use: fixtures and the scripted fake connector."""

from __future__ import annotations

from connector_nb.testing import FakeConnector, phases


def test_fixtures_give_an_isolated_session_with_fake_and_examples(connector_session, fake_connector):
    offered = {c.task_type for c in connector_session.connectors()}
    assert {"fake", "sleep", "shell", "sqlite_query"} <= offered
    run = connector_session.launch("fake")
    assert run.wait(timeout=10).phase == "SUCCEEDED"
    assert phases(run.transitions) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert fake_connector.calls[0][0] == "create"


def test_fake_connector_script_with_errors_and_repeats():
    import asyncio

    from connector_nb.connector import Resource

    fake = FakeConnector(script=["RUNNING", ValueError("x"), Resource(phase="FAILED", message="m")])

    async def drive():
        meta = await fake.create(None, "")
        first = await fake.get(meta)
        try:
            await fake.get(meta)
        except ValueError:
            pass
        third, fourth = await fake.get(meta), await fake.get(meta)
        return first.phase, third.message, fourth.phase

    assert asyncio.run(drive()) == ("RUNNING", "m", "FAILED")
