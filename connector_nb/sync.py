"""Sync connectors in ``launch``: ``execute_sync`` (``ExecuteTaskSync`` / ``do()``) takes the place of ``create``.

A sync connector's job is over when its one call returns, so the run has no metadata to poll (``b""``): the Ledger
awaits the call exactly like ``create`` (intent, deadline, at-most-once, outcome), and the final Resource is
applied to the Run at once. Its transitions are those of any run that finished before its first ``get``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Awaitable

from .connector import Resource, is_terminal
from .errors import ConnectorNbError

if TYPE_CHECKING:
    from flyteidl.admin import agent_pb2
    from flyteidl.core import literals_pb2, tasks_pb2

    from .run import Run
    from .transports.base import TaskCategory, Transport


class LaunchCall:
    """The first call of a launch: ``create``, or for a sync connector ``execute_sync``; then what follows it."""

    #: Awaited once by the Ledger, under the create deadline: the metadata to poll (``b""`` when sync).
    call: Awaitable[bytes]

    def __init__(self, sync: bool) -> None:
        """A launch of a sync (``execute_sync``) or async (``create``) connector; ``call`` is set by launch_call."""
        #: Whether the connector is sync (the run is final when ``call`` returns).
        self.sync = sync
        self.resource: Resource | None = None

    async def _execute(
        self, transport: Transport, template: tasks_pb2.TaskTemplate, inputs: literals_pb2.LiteralMap,
        output_prefix: str, metadata: agent_pb2.TaskExecutionMetadata | None,
    ) -> bytes:
        self.resource = await transport.execute_sync(template, inputs, output_prefix, metadata)
        return b""

    def finish(self, run: Run) -> bool:
        """Apply a sync connector's final Resource to ``run``; True if it did (then there is nothing to poll)."""
        if not self.sync:
            return False
        assert self.resource is not None, "finish() before the call returned"
        run._apply(final(self.resource))
        return True


async def launch_call(
    transport: Transport,
    category: TaskCategory,
    template: tasks_pb2.TaskTemplate,
    inputs: literals_pb2.LiteralMap,
    output_prefix: str,
    metadata: agent_pb2.TaskExecutionMetadata | None = None,
) -> LaunchCall:
    """``create`` for an async connector, ``execute_sync`` for a sync one (asks ``transport.is_sync`` first)."""
    try:
        sync = await transport.is_sync(category)
    except ConnectorNbError:  # e.g. the service is down: create() fails the same way, inside the journaled launch
        sync = False
    launch = LaunchCall(sync=sync)
    launch.call = (launch._execute(transport, template, inputs, output_prefix, metadata) if launch.sync
                   else transport.create(template, inputs, output_prefix, metadata))
    return launch


def final(resource: Resource) -> Resource:
    """``resource``, or FAILED if a sync connector answered with a phase that is not final (nothing could poll it)."""
    if is_terminal(resource.phase):
        return resource
    return Resource(phase="FAILED", message=f"the sync connector answered {resource.phase} (not a final phase); "
                    f"its message: {resource.message}", log_links=list(resource.log_links),
                    outputs=resource.outputs, custom_info=resource.custom_info)


__all__ = ["LaunchCall", "final", "launch_call"]
