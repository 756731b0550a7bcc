"""What a session tells its journal, and how runs come back from it after a crash.

The ``Ledger`` writes the intent before ``create``, calls ``create`` once within its deadline, records the
outcome (created, failed, or unknown), and appends every transition a run records. Without a journal
(``journal=False``) it still enforces at-most-once and deadlines, and simply writes nothing.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any, Awaitable, Mapping

from .errors import CallTimeoutError, ConnectorNbError, CreateOutcomeUnknownError, JournalError
from .polling import with_deadline
from .run import Run, Transition
from .secrets import mask_error

if TYPE_CHECKING:
    from .journal import Journal
    from .transports.base import TaskCategory

log = logging.getLogger(__name__)


def open_journal(journal: Journal | str | bool | None) -> Journal | None:
    """The session's journal: on by default (under ``CONNECTOR_NB_HOME``), a path, a Journal, or off with False."""
    if journal is False:
        return None
    from .journal import Journal

    if isinstance(journal, Journal):
        return journal
    if journal is None:  # the default: a journal that cannot be opened must not stop the session
        try:
            return Journal()
        except JournalError as e:
            log.warning("no run journal (runs will not be recoverable after a crash): %s", e)
            return None
    return Journal(None if journal is True else str(journal))


class Ledger:
    """A session's bridge to its journal (which may be off)."""

    def __init__(self, journal: Journal | None, target: str) -> None:
        """Write to ``journal`` (None: write nothing) for runs of the service at ``target``."""
        self.journal = journal
        self.target = target
        self._observer = self._append  # one bound method for every run it watches, not one each

    async def create(
        self, call: Awaitable[bytes], *, run_id: str, category: TaskCategory, template: bytes, prefix: str,
        inputs: Mapping[str, Any], timeout: float, started_at: datetime,
    ) -> bytes:
        """Journal the intent, await ``create`` once within ``timeout``, and journal what became of it."""
        if self.journal is not None:
            await self.journal.intent_async(run_id=run_id, task_type=category.name, version=category.version,
                                            target=self.target, inputs=inputs, template=template, output_prefix=prefix,
                                            started_at=started_at)
        try:
            meta = await with_deadline(call, timeout, "create", category.name)
        except (CallTimeoutError, CreateOutcomeUnknownError) as e:
            unknown = e if isinstance(e, CreateOutcomeUnknownError) else \
                CreateOutcomeUnknownError(run_id, category.name, str(e))
            masked = mask_error(unknown, inputs)
            if self.journal is not None:
                self.journal.outcome_unknown(run_id, str(masked))
            raise masked from e
        except Exception as e:
            masked_error = mask_error(e, inputs)
            if self.journal is not None:
                self.journal.create_failed(run_id, str(masked_error))
            raise masked_error  # noqa: B904 (the chain is kept, masked)
        if self.journal is not None:
            await self.journal.created_async(run_id, meta)  # on disk before launch returns: a crash can't lose it
        return meta

    def watch(self, run: Run, written: int = 1, claim: bool = False) -> None:
        """Append ``run``'s transitions to the journal as they are recorded (the first ``written`` already are).

        ``claim`` marks a reattached run as this process's, so other sessions' ``recover()`` stop listing it.
        """
        if self.journal is None:
            return
        if claim:
            self.journal.claim(run.run_id)
        run._journaled = written
        run.on_change(self._observer)

    def _append(self, run: Run) -> None:
        # called on every change of every run (most polls record nothing new): the cheap check comes first
        transitions = run.transitions
        if len(transitions) > run._journaled:
            assert self.journal is not None
            for t in transitions[run._journaled:]:
                self.journal.transition(run.run_id, t.phase, t.message, t.at, t.flag)
            run._journaled = len(transitions)

    def unfinished(self, what: str) -> list[Mapping[str, Any]]:
        """Runs that other processes left unfinished, newest first."""
        # orphans only: a live notebook's runs are its own (it polls them), not a dead kernel's to take over
        # no flush: what this process still has queued is about its own runs, which are excluded anyway
        return list(self._need(what).unfinished(exclude_pid=os.getpid(), orphans_only=True, flush=False))

    def reattachable(self, run_id: str) -> Mapping[str, Any]:
        """The journal row of ``run_id``; an error says why when it has no handle to poll."""
        row = self._need("reattach").get(run_id)
        if row["resource_meta"] is None:
            raise ConnectorNbError(_why_not_reattachable(row))
        return row

    def _need(self, what: str) -> Journal:
        if self.journal is None:
            raise ConnectorNbError(f"{what} needs the journal, which this session has turned off (journal=False)")
        return self.journal

    def close(self) -> None:
        """Flush and close the journal."""
        if self.journal is not None:
            self.journal.close()


def history(row: Mapping[str, Any]) -> list[Transition]:
    """The transitions of a journal row, as ``Transition`` records."""
    return [Transition(t["phase"], t["message"], datetime.fromisoformat(t["at"]), flag=t.get("flag", ""))
            for t in row["transitions"]]


def _why_not_reattachable(row: Mapping[str, Any]) -> str:
    run_id = row["run_id"]
    if row.get("unknown_outcome"):
        return (f"run {run_id!r} cannot be polled: create() gave no answer, so there is no handle. The job may "
                f"exist: look for execution name {run_id!r} in the external system")
    if row.get("phase") == "CREATING":
        return f"run {run_id!r} cannot be polled: its process died during create(); look for execution name {run_id!r}"
    return f"run {run_id!r} cannot be polled: its handle was not stored (it carried a secret)"


__all__ = ["Ledger", "history", "open_journal"]
