"""Tools the tool-pool tests run (a trusted python plugin; manifests are written by the tests)."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

from cortex.adapters.tools import CallContext, tool
from cortex.errors import ToolError

CALLS: collections.Counter[str] = collections.Counter()
"""How often each ``key`` was called (in this process)."""

STOPPED: set[str] = set()
"""Keys of calls that were cancelled while running."""


@tool
async def count(key: str) -> dict:
    """Count a call under ``key`` and return the count."""
    CALLS[key] += 1
    return {"key": key, "calls": CALLS[key]}


@tool(idempotent=False, side_effects="write")
async def count_once(key: str) -> dict:
    """Like count, but not idempotent."""
    CALLS[key] += 1
    return {"key": key, "calls": CALLS[key]}


@tool(timeout_s=60)
async def slow(ctx: CallContext, key: str, seconds: float = 1.0, steps: int = 1) -> dict:
    """Sleep ``seconds`` in ``steps``, reporting progress after each; count the call."""
    CALLS[key] += 1
    try:
        for step in range(1, steps + 1):
            await asyncio.sleep(seconds / steps)
            await ctx.progress(f"step {step} of {steps}", step / steps)
    except asyncio.CancelledError:
        STOPPED.add(key)
        raise
    return {"key": key, "steps": steps}


@tool
async def fail(message: str) -> dict:
    """Fail with ``message``."""
    raise ToolError(message)


@tool(idempotent=False, side_effects="write", timeout_s=120)
async def append_and_wait(path: str, seconds: float) -> dict:
    """Append a line to the file at ``path`` (one per call), then sleep ``seconds``."""
    with Path(path).open("a") as fh:
        fh.write("called\n")
    await asyncio.sleep(seconds)
    return {"path": path}


@tool
async def slow_first(key: str, seconds: float) -> dict:
    """Sleep ``seconds`` on the first call for ``key`` only (later calls return at once); count calls."""
    CALLS[key] += 1
    if CALLS[key] == 1:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            STOPPED.add(key)
            raise
    return {"key": key, "calls": CALLS[key]}


RUNNING: collections.Counter[str] = collections.Counter()
"""Calls of ``gauge`` running now, and (``<key>:max``) the most at once, per key."""


@tool
async def gauge(key: str, seconds: float) -> dict:
    """Sleep ``seconds`` while counting how many calls for ``key`` run at once."""
    RUNNING[key] += 1
    RUNNING[f"{key}:max"] = max(RUNNING[f"{key}:max"], RUNNING[key])
    try:
        await asyncio.sleep(seconds)
    finally:
        RUNNING[key] -= 1
    return {"key": key}
