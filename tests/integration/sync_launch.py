"""``AsyncSession.launch`` with the sync-connector step (``connector_nb.sync.launch_call``), for the sync tests.

session.py is the lead's file: until its ``launch`` calls ``launch_call`` itself, the tests install this copy of it,
which differs from today's only in the lines marked ``# sync``. Once session.py has them, nothing is patched.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Mapping

import pytest

from connector_nb.session import AsyncSession, Session


async def launch(
    self: AsyncSession, /, task: Any, inputs: Mapping[str, Any] | None = None, *, version: int = 0,
    custom: Mapping[str, Any] | None = None, output_prefix: str | None = None, poll: Any = None,
    autopoll: bool = True, task_execution_metadata: Any = None, **kwargs: Any,
) -> Any:
    """Today's ``AsyncSession.launch`` plus the sync step."""
    from connector_nb.run import Run, utcnow
    from connector_nb.sync import launch_call  # sync
    from connector_nb.template import bind_inputs, execution_metadata, remember_secrets

    self._check_open()
    values = {**(inputs or {}), **kwargs}
    category, template, defaults = await self.transport.resolve(task, version, custom, values)
    literals = bind_inputs(template, values, defaults)
    remember_secrets(template, {**defaults, **values})
    policy = poll or self.poll
    run_id = self.new_run_id(category.name)
    prefix = output_prefix or os.path.join(self.output_dir, run_id)
    all_inputs = {**defaults, **values}
    metadata = execution_metadata(template, run_id, task_execution_metadata)
    started = utcnow()
    first = await launch_call(self.transport, category, template, literals, prefix, metadata)  # sync
    meta = await self._ledger.create(
        first.call, run_id=run_id, category=category,  # sync: first.call instead of transport.create(...)
        template=template.SerializeToString(), prefix=prefix, inputs=all_inputs, timeout=policy.create_timeout,
        started_at=started,
    )
    run = Run(self, category, template, all_inputs, meta, prefix, policy, autopoll, run_id, started_at=started)
    self._add(run)
    if not first.finish(run) and autopoll:  # sync: a sync run is final here, nothing to poll
        run._start_poller()
    return run


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use :func:`launch` unless session.py already has the sync step."""
    if "launch_call" in inspect.getsource(AsyncSession.launch):
        return
    from connector_nb._engine import blocking

    monkeypatch.setattr(AsyncSession, "launch", launch)
    monkeypatch.setattr(Session, "launch", blocking(launch, via="_async"))
