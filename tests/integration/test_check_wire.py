"""check_connector(wire=True): the connector is served on 127.0.0.1 and every check runs through gRPC too."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit"))

from flawed_connectors import BadLogLinks, GoodConnector, NonIdempotentDelete, SleepyGet, WrongCreateType

from connector_nb import ConnectorRegistry, serve
from connector_nb.testing import CHECKS, check_connector


def grpc_failures(report) -> set[str]:
    return {r.check for r in report.failed if r.via == "grpc"}


def test_good_connector_passes_in_process_and_over_grpc():
    report = check_connector(GoodConnector(), wire=True)
    assert [r.via for r in report.results] == ["in-process"] * len(CHECKS) + ["grpc"] * len(CHECKS)
    assert report.ok, report.text()


def test_flaws_are_reported_through_the_wire():
    expected = {NonIdempotentDelete: "delete_idempotent", WrongCreateType: "create_returns_metadata",
                BadLogLinks: "log_links"}
    for cls, check in expected.items():
        report = check_connector(cls(), wire=True)
        assert check in grpc_failures(report), (cls.__name__, report.text())
        assert report.status(check, via="in-process") == "fail"


def test_time_sleep_in_async_get_stalls_the_service_loop():
    report = check_connector(SleepyGet(), wire=True, lag_threshold=0.15)
    assert grpc_failures(report) == {"event_loop"}
    row = next(r for r in report.results if r.check == "event_loop" and r.via == "grpc")
    assert "get blocked it" in row.reason


def test_check_a_task_type_on_a_running_service():
    with serve(ConnectorRegistry([GoodConnector()]), port=0, block=False) as handle:
        report = check_connector("good", target=handle.target)
    assert {r.via for r in report.results} == {"grpc"}
    assert report.ok, report.text()
    assert "type not checked" in report.results[0].reason


# -- the connector_service fixture, as a connector author would use it ---------------------------------------


def test_connector_service_serves_the_registry_over_grpc(connector_service, fake_connector):
    assert connector_service.target.startswith("grpc://127.0.0.1:")
    assert {"fake", "sleep"} <= {c.task_type for c in connector_service.connectors()}
    run = connector_service.launch("fake")
    assert run.wait(timeout=30).phase == "SUCCEEDED"
    assert [m for m, _ in fake_connector.calls][:1] == ["create"]  # the call reached the served connector
    assert "hello" in run.logs()


def test_record_a_remote_session_and_replay_it(tmp_path):
    from connector_nb import Session
    from connector_nb.recording import ReplayConnector
    from connector_nb.recordings.bigquery_fake import FakeBigQueryConnector
    from connector_nb.testing import fast_policy

    path = tmp_path / "remote.cnbrec"
    inputs = {"project": "demo", "api_key": "AIza-remote-secret-77", "query": "SELECT 1"}
    with serve(ConnectorRegistry([FakeBigQueryConnector()]), port=0, block=False) as handle, \
            Session(handle.target, poll=fast_policy(), journal=False, record=str(path)) as session:
        recorded = session.launch("bigquery_query_job_task", inputs)
        recorded.wait(timeout=60)
        recorded_logs = recorded.logs().lines
    assert "AIza-remote-secret-77" not in path.read_text()
    replay = ReplayConnector(path, speed=8)
    with Session(registry=ConnectorRegistry([replay]), poll=fast_policy(), journal=False) as session:
        run = session.launch("bigquery_query_job_task", inputs)
        run.wait(timeout=60)
        assert [t.phase for t in run.transitions] == [t.phase for t in recorded.transitions]
        assert run.logs().lines == recorded_logs
        assert run.outputs["results"].equals(recorded.outputs["results"])
