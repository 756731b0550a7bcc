"""A local fake of a BigQuery-style query connector, used to make the shipped ``bigquery_query.cnbrec``.

The job's life is a pure function of the time since ``create``: QUEUED waiting for slots, RUNNING through
three stages (progress metrics: slot-milliseconds and bytes processed), then SUCCEEDED with the result table
as a CSV structured dataset. Logs grow as stages finish and come in pages of five lines.

Regenerate the recording with ``python -m connector_nb.recordings.bigquery_fake [PATH]``.
"""

from __future__ import annotations

import csv
import sys
import time
import zlib
from dataclasses import dataclass
from typing import Any, AsyncIterator

from ..connector import AsyncConnector, Resource, ResourceMeta
from ..helpers import local_dir, log_stream, metric_result, metrics_response, page
from ..literals import StructuredDataset

QUEUED_FOR = 1.0
STAGES = (("S00: Input", 1.2), ("S01: Aggregate", 1.0), ("S02: Output", 0.8))
PAGE = 5
#: How long a query that does not parse runs before it fails.
FAILS_AFTER = 0.4
TOTAL_BYTES = 48_213_504
ROWS = [("Amsterdam", 412, 18.37), ("Berlin", 388, 16.02), ("Lisbon", 251, 14.88), ("Madrid", 297, 15.41),
        ("Paris", 455, 19.95), ("Rome", 310, 17.26)]


@dataclass
class BigQueryMeta(ResourceMeta):
    """The job reference, as BigQuery gives it."""

    job_id: str
    location: str
    created_at: float
    #: Set at create for a query that does not parse: the job fails shortly after it starts.
    error: str = ""


class FakeBigQueryConnector(AsyncConnector[BigQueryMeta]):
    """A BigQuery-style query job, simulated locally (no network)."""

    name = "Fake BigQuery connector"
    task_type_name = "bigquery_query_job_task"
    metadata_type = BigQueryMeta
    input_types = {"query": str, "project": str, "api_key": str}
    output_types = {"results": StructuredDataset, "total_bytes_processed": int}

    def __init__(self) -> None:
        super().__init__()
        self.cancelled: set[str] = set()
        #: Where each job writes its result (kept here, not in the metadata, so no local path is recorded).
        self.folders: dict[str, str] = {}

    async def create(self, task_template: Any, output_prefix: str, inputs: dict[str, Any] | None = None,
                     **kwargs: Any) -> BigQueryMeta:
        """Submit the query (deterministic job id per execution name, so a retried create is the same job)."""
        execution = kwargs["task_execution_metadata"].task_execution_id.node_execution_id.execution_id.name
        job_id = f"bquxjob_{zlib.crc32(execution.encode()):08x}"
        self.folders[job_id] = str(local_dir(output_prefix))
        return BigQueryMeta(job_id, "EU", time.time(), _syntax_error(str((inputs or {}).get("query", ""))))

    def _stage(self, elapsed: float) -> tuple[str, float]:
        """(phase, fraction of the stages done) at ``elapsed`` seconds."""
        if elapsed < QUEUED_FOR:
            return "QUEUED", 0.0
        done = elapsed - QUEUED_FOR
        total = sum(s for _, s in STAGES)
        return ("SUCCEEDED", 1.0) if done >= total else ("RUNNING", done / total)

    def _log(self, meta: BigQueryMeta, elapsed: float) -> list[str]:
        lines = [f"job {meta.job_id} created in {meta.location}", "waiting for slots"]
        if meta.error:
            if elapsed >= QUEUED_FOR:
                lines.append("query started: 1 statement")
            if elapsed >= QUEUED_FOR + FAILS_AFTER:
                lines += [f"error: {meta.error}", "job failed"]
            return lines
        if elapsed >= QUEUED_FOR:
            lines.append("query started: 1 statement, 3 stages")
            at = QUEUED_FOR
            for name, seconds in STAGES:
                lines.append(f"{name} running")
                at += seconds
                if elapsed < at:
                    break  # append-only: a stage's lines come after the previous stage completed
                lines.append(f"{name} complete ({seconds * 1000:.0f} ms of slot time)")
        if self._stage(elapsed)[0] == "SUCCEEDED":
            lines += [f"{TOTAL_BYTES} bytes processed", f"{len(ROWS)} rows written to the destination table",
                      "job done"]
        return lines

    async def get(self, resource_meta: BigQueryMeta, **kwargs: Any) -> Resource:
        """The job state at this moment."""
        elapsed = time.time() - resource_meta.created_at
        phase, progress = self._stage(elapsed)
        links = [{"name": "BigQuery console", "uri": "https://console.cloud.google.com/bigquery?project=demo"
                  f"&j=bq:{resource_meta.location}:{resource_meta.job_id}&page=queryresults"}]
        custom = {"job_id": resource_meta.job_id, "progress": round(progress, 2)}
        if resource_meta.job_id in self.cancelled and phase != "SUCCEEDED":
            return Resource("ABORTED", "job cancelled", links, custom_info=custom)
        if phase == "QUEUED":
            return Resource("QUEUED", "waiting for slots", links, custom_info=custom)
        if resource_meta.error:
            if elapsed < QUEUED_FOR + FAILS_AFTER:
                return Resource("RUNNING", "running: parsing the query", links, custom_info=custom)
            return Resource("FAILED", resource_meta.error, links, custom_info=custom)
        if phase == "RUNNING":
            return Resource("RUNNING", f"running: {progress:.0%} of stages done", links, custom_info=custom)
        path = f"{self.folders[resource_meta.job_id]}/{resource_meta.job_id}.csv"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["city", "trips", "avg_fare"])
            writer.writerows(ROWS)
        outputs = {"results": StructuredDataset(path, "csv"), "total_bytes_processed": TOTAL_BYTES}
        return Resource("SUCCEEDED", f"query done: {len(ROWS)} rows", links, outputs, custom)

    async def delete(self, resource_meta: BigQueryMeta, **kwargs: Any) -> None:
        """Cancel the job (idempotent; a finished job stays finished)."""
        self.cancelled.add(resource_meta.job_id)

    async def get_logs(self, resource_meta: BigQueryMeta, token: str = "", **kwargs: Any) -> AsyncIterator[Any]:
        """The job log so far, five lines a page; the token is the next line offset."""
        lines, next_token = page(self._log(resource_meta, time.time() - resource_meta.created_at), token, PAGE)
        async for response in log_stream(lines, next_token=next_token):
            yield response

    async def get_metrics(self, resource_meta: BigQueryMeta, **kwargs: Any) -> Any:
        """Slot-milliseconds and bytes processed so far, as Prometheus-style series (one point per 0.5 s)."""
        elapsed = min(time.time() - resource_meta.created_at, QUEUED_FOR + sum(s for _, s in STAGES))
        times = [k * 0.5 for k in range(int(elapsed / 0.5) + 1)]
        start, labels = resource_meta.created_at, {"job_id": resource_meta.job_id}
        slots = [(start + t, round(self._stage(t)[1] * 3000)) for t in times]
        scanned = [(start + t, round(self._stage(t)[1] * TOTAL_BYTES)) for t in times]
        return metrics_response([metric_result("slot_ms", labels, slots),
                                 metric_result("bytes_processed", labels, scanned)])


def _syntax_error(query: str) -> str:
    """BigQuery's message for a query whose first word is not SELECT or WITH ("" when it is)."""
    first = (query.split() or [""])[0]
    if first.upper() in ("SELECT", "WITH"):
        return ""
    return f'Syntax error: Expected "SELECT" or "WITH" but got identifier "{first}" at [1:1]'


def make_recording(path: str) -> None:
    """Run two queries against the fake with recording on: one succeeds (logs and metrics read mid-run and at
    the end), one has a typo and fails."""
    import tempfile

    from ..registry import ConnectorRegistry
    from ..session import Session
    from ..testing import fast_policy, wait_until

    with tempfile.TemporaryDirectory() as scratch, Session(
        registry=ConnectorRegistry([FakeBigQueryConnector()]), poll=fast_policy(max_interval=0.2), journal=False,
        output_dir=scratch, record=path,
    ) as session:
        run = session.launch("bigquery_query_job_task", project="demo", api_key="AIza-demo-key-not-real-0001",
                             query="SELECT city, COUNT(*) AS trips, AVG(fare) AS avg_fare FROM trips GROUP BY city")
        run.logs()  # while QUEUED
        wait_until(lambda: run.phase == "RUNNING", timeout=30, what="RUNNING")
        for stage in range(3):
            wait_until(lambda: run.elapsed > QUEUED_FOR + 0.6 * (stage + 1), timeout=30, what="a stage")  # noqa: B023
            run.logs()
            run.metrics()
        run.wait(timeout=30)
        run.logs()
        run.metrics()
        failed = session.launch("bigquery_query_job_task", project="demo", api_key="AIza-demo-key-not-real-0001",
                                query="SELEC city FROM trips")
        failed.wait(timeout=30)
        failed.logs()


if __name__ == "__main__":
    make_recording(sys.argv[1] if len(sys.argv) > 1 else "bigquery_query.cnbrec")
