"""check_connector in-process: a good connector passes, each flawed one fails the check named for its flaw."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from flawed_connectors import (
    BadLogLinks,
    GoodConnector,
    NeverEnds,
    NonIdempotentDelete,
    SleepyGet,
    WrongCreateType,
)
from flyteidl.admin import agent_pb2
from flyteidl.core import metrics_pb2
from google.protobuf import json_format, struct_pb2

from connector_nb import ConnectorRegistry, InputError, Resource, UnknownTaskTypeError
from connector_nb.check import metrics_problem, uri_problem
from connector_nb.testing import CHECKS, FakeConnector, check_connector


def failed(report) -> set[str]:
    return {r.check for r in report.failed}


def test_good_connector_passes_every_check():
    report = check_connector(GoodConnector())
    assert [r.check for r in report.results] == list(CHECKS)
    assert report.ok, report.text()
    assert {r.status for r in report.results} == {"pass"}
    assert "QUEUED, RUNNING, SUCCEEDED" in next(r.reason for r in report.results if r.check == "get_valid_phase")
    assert report.status("create_retry_safe") == "pass"  # it deduplicates on the execution id


def test_create_that_does_not_deduplicate_is_a_warning_not_a_failure():
    report = check_connector(FakeConnector())
    assert report.ok
    assert report.status("create_retry_safe") == "warn"


def test_non_idempotent_delete_is_reported():
    report = check_connector(NonIdempotentDelete())
    assert failed(report) == {"delete_idempotent"}
    row = next(r for r in report.results if r.check == "delete_idempotent")
    assert "second delete in a row failed" in row.reason and "not found" in row.reason


def test_time_sleep_in_async_get_is_reported_naming_get():
    report = check_connector(SleepyGet(), lag_threshold=0.15)
    assert failed(report) == {"event_loop"}
    row = next(r for r in report.results if r.check == "event_loop")
    assert row.reason.startswith("get blocked it")


def test_blocking_def_methods_run_in_threads_and_do_not_stall_the_loop():
    from connector_nb.testing import BlockingFakeConnector

    report = check_connector(BlockingFakeConnector("blocking_def", block=0.3), lag_threshold=0.15)
    assert report.status("event_loop") == "pass", report.text()


def test_create_returning_the_wrong_type_is_reported():
    report = check_connector(WrongCreateType())
    assert "create_returns_metadata" in failed(report)
    row = next(r for r in report.results if r.check == "create_returns_metadata")
    assert "not a FakeMeta" in row.reason


def test_malformed_log_links_are_reported():
    report = check_connector(BadLogLinks())
    assert failed(report) == {"log_links"}
    row = next(r for r in report.results if r.check == "log_links")
    assert "'driver log'" in row.reason and "no scheme" in row.reason


def test_a_run_that_never_ends_is_reported_within_the_bound():
    report = check_connector(NeverEnds(), timeout=0.3)
    assert "reaches_terminal" in failed(report)
    row = next(r for r in report.results if r.check == "reaches_terminal")
    assert row.reason == "still RUNNING after 0.3 s (the bound)"
    assert report.status("delete_idempotent") == "pass"  # the other checks still ran


def test_a_phase_that_goes_backwards_is_a_warning():
    report = check_connector(FakeConnector("backwards", script=("RUNNING", "QUEUED", "SUCCEEDED")))
    assert report.ok
    assert report.status("get_valid_phase") == "warn"
    assert "phase went backwards: RUNNING -> QUEUED" in report.text()


def test_an_invalid_phase_fails_get_valid_phase():
    class BadPhase(FakeConnector):
        async def get(self, resource_meta, **kwargs):
            return Resource(phase="DONE-ISH")

    report = check_connector(BadPhase("bad_phase"))
    assert report.status("get_valid_phase") == "fail"
    assert "unknown phase 'DONE-ISH'" in report.text()


def test_registry_entry_by_task_type_and_unknown_name():
    registry = ConnectorRegistry([GoodConnector()])
    assert check_connector("good", registry=registry).ok
    with pytest.raises(UnknownTaskTypeError):
        check_connector("nope", registry=registry)
    with pytest.raises(TypeError, match="connector: expected an AsyncConnector"):
        check_connector(42)  # type: ignore[arg-type]


def test_bad_options_name_the_field():
    with pytest.raises(TypeError, match="inputs: expected a mapping"):
        check_connector(GoodConnector(), ["x"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout: expected a positive finite number"):
        check_connector(GoodConnector(), timeout=0)
    with pytest.raises(TypeError, match="lag_threshold: expected a number of seconds, got str"):
        check_connector(GoodConnector(), lag_threshold="fast")
    with pytest.raises(InputError, match="task 'fake' has no input 'nope'"):
        check_connector(FakeConnector(input_types={"n": int}), {"nope": 1})
    with pytest.raises(TypeError, match="with target=..., give the task type name"):
        check_connector(GoodConnector(), target="grpc://127.0.0.1:1")


def test_secret_inputs_never_reach_the_reasons():
    secret = "tok-9f8e7d6c5b4a"

    class Leaky(FakeConnector):
        def __init__(self):
            super().__init__("leaky", input_types={"api_token": str})

        async def delete(self, resource_meta, **kwargs):
            raise RuntimeError(f"delete refused for token {self.created[resource_meta.job_id]['api_token']}")

    report = check_connector(Leaky(), {"api_token": secret})
    assert "delete_after_completion" in failed(report)
    assert secret not in report.text() and secret not in report.junit_xml()
    assert "••••" in next(r.reason for r in report.results if r.check == "delete_after_completion")


def test_text_and_junit_forms():
    report = check_connector(BadLogLinks())
    text = report.text(durations=False)
    lines = text.splitlines()
    assert lines[0].split() == ["CHECK", "STATUS", "VIA", "REASON"]
    assert lines[0].index("STATUS") == lines[1].index("PASS")  # aligned columns
    assert lines[-1] == "bad_log_links: 10 passed, 1 warnings, 1 failed"
    suite = ET.fromstring(report.junit_xml())
    assert suite.get("tests") == str(len(CHECKS)) and suite.get("failures") == "1"
    failures = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failures == ["log_links[in-process]"]
    frame = report.frame()
    assert list(frame.columns) == ["check", "status", "reason", "duration", "via"]
    assert frame.loc[frame.check == "log_links", "status"].item() == "fail"


@pytest.mark.parametrize("uri,problem", [
    ("https://x.example/a", ""), ("file:///tmp/a.log", ""), ("s3://bucket/key", ""),
    ("", "empty"), ("a b", "contains whitespace"), ("host/path", "no scheme"),
    ("https:///path", "no host"), ("1http://x", "no scheme"),
])
def test_uri_problem(uri, problem):
    assert uri_problem(uri) == problem


def _metrics(data):
    struct = json_format.ParseDict(data, struct_pb2.Struct())
    return agent_pb2.GetTaskMetricsResponse(results=[metrics_pb2.ExecutionMetricResult(metric="m", data=struct)])


def test_metrics_problem():
    assert metrics_problem(_metrics({"result": [{"metric": {}, "values": [[1, "2.5"], [2, "NaN"]]}]})) == ""
    assert "no 'result' list" in metrics_problem(_metrics({"rows": []}))
    assert "is not [timestamp, value]" in metrics_problem(_metrics({"result": [{"metric": {}, "values": [[1]]}]}))
    assert "is not [timestamp, value]" in metrics_problem(_metrics({"result": [{"values": [["x", "y"]]}]}))


def test_magic_check_returns_the_table_and_rejects_bad_usage(tmp_path):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    from connector_nb import Session
    from connector_nb.magics import SESSION_NAME

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "connector_nb")
    session = Session(registry=ConnectorRegistry([GoodConnector(), BadLogLinks()]), journal=False,
                      output_dir=str(tmp_path))
    shell.user_ns[SESSION_NAME] = session
    try:
        frame = shell.run_line_magic("connector", "check bad_log_links")
        assert list(frame.columns) == ["check", "status", "reason", "duration", "via"]
        assert frame.set_index("check").loc["log_links", "status"] == "fail"
        frame = shell.run_line_magic("connector", "check good --wire")
        assert set(frame.via) == {"in-process", "grpc"} and set(frame.status) == {"pass"}
        with pytest.raises(UsageError, match="check needs a task type"):
            shell.run_line_magic("connector", "check")
        with pytest.raises(UsageError, match="no connector for task type 'nope'"):
            shell.run_line_magic("connector", "check nope")
    finally:
        shell.run_line_magic("unload_ext", "connector_nb")
        session.close()
        shell.user_ns.pop(SESSION_NAME, None)
