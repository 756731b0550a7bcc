"""The session inside a real Jupyter kernel (nbclient): `await run`, blocking `wait()`, AsyncSession on the kernel loop.

flytekit's local executor raises "another loop is running" here; these cells must just work.
"""

from __future__ import annotations

import pytest
from kernel_cells import execute_cells, stream_text

CELLS = [
    "import asyncio\n"
    "from connector_nb import AsyncSession, Session\n"
    "session = Session()\n"
    "runs = [session.launch('sleep', seconds=0.5) for _ in range(3)]",
    # awaiting runs from a cell leaves the kernel's own loop running (the ticker advances)
    "ticks = 0\n"
    "async def tick():\n"
    "    global ticks\n"
    "    while True:\n"
    "        ticks += 1\n"
    "        await asyncio.sleep(0.01)\n"
    "ticker = asyncio.ensure_future(tick())\n"
    "results = [await r for r in runs]\n"
    "ticker.cancel()\n"
    "print('awaited', [r.phase for r in results], ticks > 5)",
    # the blocking form works inside the running kernel loop too
    "run = session.launch('sleep', seconds=0.2)\n"
    "print('waited', run.wait(timeout=30).phase)",
    # an AsyncSession lives on the kernel's loop: the same Run methods are awaitable there
    "local = AsyncSession()\n"
    "arun = await local.launch('sleep', seconds=0.2)\n"
    "print('async', (await arun.wait()).phase, len(await arun.logs()) > 0, arun.session is local)\n"
    "await arun.cancel()\n"
    "await local.close()",
    # a Session's live run awaited with *_async from the kernel's loop (this used to hang)
    "live = session.launch('sleep', seconds=0.5)\n"
    "print('bridged', (await live.wait_async(timeout=30)).phase, live.session is session)\n"
    "session.close()",
]


@pytest.mark.kernel
def test_session_in_a_real_kernel():
    out = [stream_text(cell) for cell in execute_cells(CELLS).cells]
    assert out[1].strip() == "awaited ['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED'] True"
    assert out[2].strip() == "waited SUCCEEDED"
    assert out[3].strip() == "async SUCCEEDED True True"
    assert out[4].strip() == "bridged SUCCEEDED True"
