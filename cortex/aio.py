"""Small asyncio helpers shared by every process."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("cortex")


async def cancel_and_wait(task: asyncio.Task, timeout_s: float = 10.0) -> None:
    """Cancel ``task`` and wait until it is done, cancelling again while it is not.

    nats-py swallows a cancellation that lands in some of its awaits (flushing, draining), so one
    ``cancel()`` may be lost; a task still running after ``timeout_s`` is left behind (logged).
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not task.done() and asyncio.get_running_loop().time() < deadline:
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if not task.done():
        log.warning("task %s did not stop within %.0fs", task.get_name(), timeout_s)
    elif not task.cancelled() and task.exception() is not None:
        log.debug("task %s ended with %r", task.get_name(), task.exception())
