"""ShellConnector: runs a ``/bin/sh -c`` command as a real subprocess in its own process group.

Output goes to a log file and CPU/RSS samples to a JSONL file, both under ``output_prefix``. The wrapper
shell writes the exit status to an ``exitcode`` file, so a process that did not start the job (e.g. a
restarted gRPC server) can still tell how it ended; in the creating process the Popen object is used.
The job runs with a scrubbed environment (a few basics such as PATH, HOME and LANG plus the task's ``env``),
never the caller's, and its record in the ``JobStore`` is what forged metadata is checked against.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator

from ..connector import AsyncConnector, Resource, ResourceMeta
from ..errors import InputError
from ..helpers import (
    JobStore,
    custom_dict,
    downsample,
    expect_meta,
    file_log_link,
    log_stream,
    metric_result,
    metrics_response,
    new_job_id,
    read_page,
    read_samples,
    safe_output_dir,
    wanted,
)
from ..secrets import mask, secret_values

if TYPE_CHECKING:
    from flyteidl.admin import agent_pb2

#: pid -> Popen for jobs started by this process: gives exit statuses and reaps zombies.
_PROCS: dict[int, subprocess.Popen[bytes]] = {}
_PROCS_LOCK = threading.Lock()
_SAMPLE_EVERY = 0.2
_KILL_AFTER = 2.0
#: Tolerance when matching a live pid's start time to the metadata (guards against pid reuse).
_START_TOLERANCE = 1.0
#: The only variables a job inherits from the process that starts it; the rest (tokens!) stay behind.
BASE_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL")
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass
class ShellMeta(ResourceMeta):
    pid: int
    log_path: str
    metrics_path: str
    #: The process's start time (psutil ``create_time``); also identifies it against pid reuse.
    started_at: float
    output_prefix: str


class ShellConnector(AsyncConnector[ShellMeta]):
    """Runs ``command`` with ``/bin/sh -c``; SUCCEEDED on exit code 0, FAILED otherwise, ABORTED when deleted."""

    name = "Shell Connector"
    task_type_name = "shell"
    metadata_type = ShellMeta
    input_types = {"command": str, "env": dict[str, str] | None, "cwd": str | None}
    input_defaults = {"env": None, "cwd": None}
    output_types = {"returncode": int, "stdout_path": str}

    def __init__(self, output_root: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: Where ``output_prefix`` may point (default ``$CONNECTOR_NB_OUTPUT_ROOT``; None: anywhere without '..').
        self.output_root = output_root or os.environ.get("CONNECTOR_NB_OUTPUT_ROOT") or None
        self.jobs = JobStore("shell")

    def create(
        self, task_template: Any, output_prefix: str, inputs: dict[str, Any] | None = None,
        task_execution_metadata: Any = None, **kwargs: Any,
    ) -> ShellMeta:
        import psutil

        values = {**self.input_defaults, **(inputs or {})}
        command, env, cwd = _check_inputs(values)
        secret_values(values)  # secret-named values (e.g. env API_KEY) are masked in this job's logs
        custom_dict(task_template)  # nothing configurable yet; parsing still rejects a malformed template
        job_dir = safe_output_dir(output_prefix, self.output_root, reroot=True) / f"shell-{new_job_id()}"
        job_dir.mkdir()
        log_path, metrics_path = job_dir / "output.log", job_dir / "metrics.jsonl"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", _wrapped(command, job_dir)], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=cwd, env=job_env(env), start_new_session=True,
            )
        with _PROCS_LOCK:
            _PROCS[proc.pid] = proc
        try:
            started_at = psutil.Process(proc.pid).create_time()
        except psutil.Error:  # unreaped children stay readable, so this is a last resort
            started_at = time.time()
        threading.Thread(target=_sample, args=(proc, metrics_path), name=f"shell-sampler-{proc.pid}",
                         daemon=True).start()
        meta = ShellMeta(pid=proc.pid, log_path=str(log_path), metrics_path=str(metrics_path),
                         started_at=started_at, output_prefix=str(output_prefix))
        self.jobs.save(job_dir.name, vars(meta))
        return meta

    def _meta(self, resource_meta: ResourceMeta) -> ShellMeta:
        """``resource_meta`` if it matches a job this machine started (its paths included), else MetadataError."""
        meta = expect_meta(resource_meta, ShellMeta)
        self.jobs.check(Path(meta.log_path).parent.name, vars(meta))
        return meta

    def get(self, resource_meta: ResourceMeta, **kwargs: Any) -> Resource:
        meta = self._meta(resource_meta)
        links = [file_log_link("shell log", meta.log_path)]
        custom: dict[str, Any] = {"pid": meta.pid, "log_path": meta.log_path}
        running, rc = _status(meta)
        if _job_dir(meta).joinpath("cancelled").exists():
            return Resource("ABORTED", "cancelled by delete", links, custom_info=custom)
        if running:
            return Resource("RUNNING", f"running: pid {meta.pid}, {time.time() - meta.started_at:.1f} s", links,
                            custom_info=custom)
        if rc is None:
            return Resource("FAILED", f"pid {meta.pid} ended without an exit status (killed from outside?)", links,
                            custom_info=custom)
        custom["returncode"] = rc
        if rc == 0:
            return Resource("SUCCEEDED", "exit code 0", links, {"returncode": 0, "stdout_path": meta.log_path}, custom)
        reason = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
        last = mask(_last_line(Path(meta.log_path)))
        return Resource("FAILED", f"{reason}: {last}" if last else reason, links, custom_info=custom)

    def delete(self, resource_meta: ResourceMeta, **kwargs: Any) -> None:
        meta = self._meta(resource_meta)
        running, _ = _status(meta)
        if not running:
            return  # finished (or already killed): nothing to do, and a finished job keeps its phase
        _job_dir(meta).joinpath("cancelled").write_text(f"{time.time()}\n")  # visible to every process
        if _killpg(meta.pid, signal.SIGTERM):
            # SIGKILL stragglers later without blocking the caller.
            threading.Thread(target=_kill_later, args=(meta.pid,), name=f"shell-kill-{meta.pid}", daemon=True).start()

    async def get_logs(
        self, resource_meta: ResourceMeta, **kwargs: Any
    ) -> AsyncIterator[agent_pb2.GetTaskLogsResponse]:
        import asyncio

        meta = self._meta(resource_meta)
        lines, next_token = await asyncio.to_thread(
            read_page, Path(meta.log_path), kwargs.get("token") or "", kwargs.get("lines") or 0
        )
        async for response in log_stream(lines, next_token=next_token):
            yield response

    def get_metrics(self, resource_meta: ResourceMeta, **kwargs: Any) -> agent_pb2.GetTaskMetricsResponse:
        meta = self._meta(resource_meta)
        samples = read_samples(Path(meta.metrics_path))
        labels = {"pid": str(meta.pid)}
        results = [
            metric_result(name, labels, downsample(((s["t"], s[name]) for s in samples), kwargs))
            for name in ("cpu_percent", "rss_bytes") if wanted(name, kwargs)
        ]
        return metrics_response(results)


def _check_inputs(values: dict[str, Any]) -> tuple[str, dict[str, str] | None, str | None]:
    command, env, cwd = values.get("command"), values.get("env"), values.get("cwd")
    if not isinstance(command, str) or not command.strip():
        raise InputError(f"shell: input 'command' must be a non-empty string, got {command!r}")
    if env is not None and not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                            for k, v in env.items())):
        raise InputError(f"shell: input 'env' must be a dict of str to str or None, got {env!r}")
    if cwd is not None and not (isinstance(cwd, str) and os.path.isdir(cwd)):
        raise InputError(f"shell: input 'cwd' must be an existing directory or None, got {cwd!r}")
    return command, env, cwd


def job_env(extra: dict[str, str] | None) -> dict[str, str]:
    """A job's environment: the ``BASE_ENV`` basics of this process, then the task's own ``env``."""
    env = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
    env.setdefault("PATH", _DEFAULT_PATH)
    return {**env, **(extra or {})}


def _wrapped(command: str, job_dir: Path) -> str:
    # The command runs in a nested shell so that its own `exit N` still lets the wrapper record N; the
    # status is written to a temp file and renamed so a reader never sees a half-written file.
    tmp, final = shlex.quote(str(job_dir / "exitcode.tmp")), shlex.quote(str(job_dir / "exitcode"))
    return f"/bin/sh -c {shlex.quote(command)}; rc=$?; echo $rc > {tmp} && mv {tmp} {final}; exit $rc"


def _job_dir(meta: ShellMeta) -> Path:
    return Path(meta.log_path).parent


def _status(meta: ShellMeta) -> tuple[bool, int | None]:
    """(running, exit code): from our Popen when we started the job, else from the pid and exitcode file."""
    with _PROCS_LOCK:
        proc = _PROCS.get(meta.pid)
    if proc is not None:
        rc = proc.poll()  # also reaps
        return rc is None, rc
    if _alive(meta):
        return True, None
    try:
        return False, int(_job_dir(meta).joinpath("exitcode").read_text().strip())
    except (OSError, ValueError):
        return False, None


def _alive(meta: ShellMeta) -> bool:
    """Whether ``meta.pid`` is still our process (same start time), not a zombie and not a reused pid."""
    import psutil

    try:
        proc = psutil.Process(meta.pid)
        same = abs(proc.create_time() - meta.started_at) < _START_TOLERANCE
        return bool(same and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _killpg(pgid: int, sig: int) -> bool:
    """Signal the job's process group; False when it no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False


def _kill_later(pgid: int) -> None:
    deadline = time.monotonic() + _KILL_AFTER
    while time.monotonic() < deadline:
        with _PROCS_LOCK:
            proc = _PROCS.get(pgid)
        if proc is not None:
            proc.poll()  # reap the leader, or the group never looks empty
        if not _killpg(pgid, 0):
            return
        time.sleep(0.05)
    _killpg(pgid, signal.SIGKILL)
    with _PROCS_LOCK:
        proc = _PROCS.get(pgid)
    if proc is not None:
        proc.wait()


def _sample(proc: subprocess.Popen[bytes], metrics_path: Path) -> None:
    """Append CPU% and RSS of the process and its descendants every ``_SAMPLE_EVERY`` s until it exits."""
    import psutil

    known: dict[int, psutil.Process] = {}  # kept across samples: cpu_percent() measures since the last call
    with open(metrics_path, "a") as out:
        while True:
            sample = _measure(proc.pid, known)
            if sample is not None:
                out.write(json.dumps(sample) + "\n")
                out.flush()
            try:
                proc.wait(timeout=_SAMPLE_EVERY)  # also reaps the leader promptly
                return
            except subprocess.TimeoutExpired:
                continue


def _measure(pid: int, known: dict[int, Any]) -> dict[str, float] | None:
    import psutil

    try:
        root = known.setdefault(pid, psutil.Process(pid))
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    cpu = rss = 0.0
    for p in procs:
        p = known.setdefault(p.pid, p)
        try:
            cpu += p.cpu_percent(None)
            rss += p.memory_info().rss
        except psutil.Error:
            continue  # exited between listing and reading
    return {"t": round(time.time(), 3), "cpu_percent": round(cpu, 2), "rss_bytes": rss}


def _last_line(path: Path, tail: int = 4096) -> str:
    """The last non-empty line of the log (read from the end, so huge logs stay cheap), shortened."""
    try:
        with open(path, "rb") as f:
            f.seek(max(f.seek(0, os.SEEK_END) - tail, 0))
            lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


__all__ = ["ShellConnector", "ShellMeta"]
