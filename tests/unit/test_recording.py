"""Record a real run, replay it: same transitions, outputs, logs and metrics; secrets never reach the file."""

from __future__ import annotations

import json

import pytest

from connector_nb import ConnectorRegistry, Session
from connector_nb.recording import (
    FORMAT,
    VERSION,
    Recording,
    RecordingError,
    ReplayConnector,
    ReplayMismatchError,
    first_difference,
)
from connector_nb.recordings import BIGQUERY
from connector_nb.recordings import path as shipped
from connector_nb.recordings.bigquery_fake import FakeBigQueryConnector
from connector_nb.testing import fast_policy, wait_until

SECRET = "AIza-very-secret-key-1234"
QUERY = "SELECT city, COUNT(*) AS trips FROM trips GROUP BY city"


def drive(registry, tmp_path, record=None, api_key=SECRET, query=QUERY):
    """Launch one query, fetch logs and metrics mid-run and at the end; return what a user would see."""
    with Session(registry=registry, poll=fast_policy(max_interval=0.05), journal=False,
                 output_dir=str(tmp_path / "out"), record=record) as session:
        run = session.launch("bigquery_query_job_task", project="demo", api_key=api_key, query=query)
        wait_until(lambda: run.phase == "RUNNING", timeout=30, what="RUNNING")
        run.logs()
        run.wait(timeout=30)
        return {
            "phases": [t.phase for t in run.transitions],
            "times": [(t.at - run.transitions[0].at).total_seconds() for t in run.transitions],
            "outputs": run.outputs,
            "logs": run.logs().lines,
            "metrics": run.metrics().to_dict("records"),
        }


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rec")
    path = tmp / "bq.cnbrec"
    seen = drive(ConnectorRegistry([FakeBigQueryConnector()]), tmp, record=str(path))
    return path, seen


def test_recording_is_versioned_json_lines_without_secrets(recorded):
    path, _ = recorded
    text = path.read_text()
    assert SECRET not in text
    lines = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    assert lines[0]["format"] == FORMAT and lines[0]["version"] == VERSION
    methods = {line["method"] for line in lines[1:]}
    assert {"create", "get", "get_logs", "get_metrics"} <= methods
    create = lines[1]
    assert create["request"]["inputs"]["literals"]["api_key"] == {"scalar": {"primitive": {"string_value": "••••"}}}
    got = [line for line in lines[1:] if line["method"] == "get"]
    assert got[-1]["attachments"], "the CSV result is embedded"
    assert all(line["duration"] >= 0 and line["at"] >= 0 for line in lines[1:])


def test_replay_gives_the_same_transitions_outputs_logs_and_metrics(recorded, tmp_path):
    path, seen = recorded
    replayed = drive(ConnectorRegistry([ReplayConnector(path)]), tmp_path, api_key="any-other-key")
    assert replayed["phases"] == seen["phases"] == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert replayed["outputs"]["total_bytes_processed"] == seen["outputs"]["total_bytes_processed"]
    assert replayed["outputs"]["results"].equals(seen["outputs"]["results"])
    assert replayed["logs"] == seen["logs"]
    assert replayed["metrics"] == seen["metrics"]
    # Same pace: the run finishes no earlier than the recorded job did (replay is never ahead of the recording).
    assert replayed["times"][-1] >= seen["times"][-1] - 0.3


def test_speed_scales_the_recorded_pace(recorded, tmp_path):
    path, seen = recorded
    replayed = drive(ConnectorRegistry([ReplayConnector(path, speed=20)]), tmp_path)
    assert replayed["phases"][-1] == "SUCCEEDED"
    assert replayed["logs"] == seen["logs"]


def test_a_mismatched_request_names_the_first_difference(recorded, tmp_path):
    path, _ = recorded
    with pytest.raises(ReplayMismatchError, match=r"create\.inputs\.query: recorded 'SELECT city.*now 'SELECT 1'"):
        drive(ConnectorRegistry([ReplayConnector(path)]), tmp_path, query="SELECT 1")


def test_bad_files_and_arguments(tmp_path):
    bad = tmp_path / "x.cnbrec"
    bad.write_text('{"hello": 1}\n')
    with pytest.raises(RecordingError, match="not a connector-nb recording"):
        ReplayConnector(bad)
    bad.write_text(json.dumps({"format": FORMAT, "version": 99}) + "\n")
    with pytest.raises(RecordingError, match="version 99"):
        Recording.load(bad)
    bad.write_text(json.dumps({"format": FORMAT, "version": 1}) + "\n{not json\n")
    with pytest.raises(RecordingError, match="line 2"):
        Recording.load(bad)
    bad.write_text(json.dumps({"format": FORMAT, "version": 1}) + "\n")
    with pytest.raises(RecordingError, match="no successful create"):
        ReplayConnector(bad)
    with pytest.raises(ValueError, match="speed must be a positive number"):
        ReplayConnector(BIGQUERY, speed=0)
    with pytest.raises(ValueError, match="no shipped recording 'nope'; expected one of: bigquery_query"):
        shipped("nope")
    other = tmp_path / "notes.txt"
    other.write_text("plain text\n")
    with pytest.raises(RecordingError, match="not a connector-nb recording"):
        Session(journal=False, record=str(other))  # appending calls would corrupt someone's file
    assert other.read_text() == "plain text\n"
    with pytest.raises(RecordingError, match="cannot write recording"):
        Session(journal=False, record=str(tmp_path / "missing" / "x.cnbrec"))
    binary = tmp_path / "binary.cnbrec"
    binary.write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(RecordingError, match="cannot read recording binary.cnbrec"):
        ReplayConnector(binary)


def test_first_difference():
    assert first_difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2}]}, "x") is None
    assert first_difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]}, "x") == "x.a[1].b: recorded 2, now 3"
    assert first_difference({"a": 1}, {}, "x") == "x.a: recorded 1, missing now"
    assert first_difference({}, {"z": 1}, "x") == "x.z: not in the recording, now 1"


def test_shipped_recording_replays_offline(tmp_path):
    rec = Recording.load(BIGQUERY)
    assert rec.header["version"] == VERSION
    assert BIGQUERY.stat().st_size < 64 * 1024
    text = BIGQUERY.read_text()
    for machine_path in ("/tmp/", "/home/", "/root/", "/work/", "file://"):
        assert machine_path not in text
    with Session(registry=ConnectorRegistry([ReplayConnector(BIGQUERY, speed=8)]), poll=fast_policy(),
                 journal=False) as session:
        template = session.transport.registry.list_connectors()[0].task_template()
        assert set(template.interface.inputs.variables) == {"query", "project", "api_key"}
        first = rec.creates()[0]["request"]["inputs"]["literals"]
        run = session.launch("bigquery_query_job_task", project="demo", api_key="x" * 8,
                             query=first["query"]["scalar"]["primitive"]["string_value"])
        run.wait(timeout=30)
        assert [t.phase for t in run.transitions] == ["QUEUED", "RUNNING", "SUCCEEDED"]
        assert list(run.outputs["results"].columns) == ["city", "trips", "avg_fare"]
        assert len(run.logs().lines) == 12
        failed = session.launch("bigquery_query_job_task", ReplayConnector(BIGQUERY).recorded_inputs(1))
        failed.wait(timeout=30)
        assert [t.phase for t in failed.transitions] == ["QUEUED", "RUNNING", "FAILED"]
        assert failed.message.startswith('Syntax error: Expected "SELECT" or "WITH" but got identifier "SELEC"')
        assert failed.logs().lines[-1] == "job failed"
    with pytest.raises(ValueError, match="index: expected an int below 2"):
        ReplayConnector(BIGQUERY).recorded_inputs(2)


def test_a_replayed_connector_passes_the_conformance_check():
    from connector_nb.testing import check_connector

    replay = ReplayConnector(BIGQUERY, speed=8)
    report = check_connector(replay, replay.recorded_inputs())
    assert report.ok, report.text()
    assert report.status("create_retry_safe") == "pass"  # a retried create replays the same job
    assert report.status("logs") == "pass" and "12 lines in 4 page(s)" in report.text()


def test_forged_replay_metadata_is_refused():
    import asyncio

    from connector_nb.errors import MetadataError
    from connector_nb.recording import ReplayMeta

    replay = ReplayConnector(BIGQUERY)
    with pytest.raises(MetadataError, match="not in the recording"):
        asyncio.run(replay.get(ReplayMeta(job='{"job_id": "forged"}', started_at=0.0)))
