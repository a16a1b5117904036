"""Tools of the ``e2e`` bench plugin: a timed wait and a no-op (python runtime, in the worker)."""

from __future__ import annotations

import asyncio

from cortex.adapters.tools import tool


@tool
async def wait(ms: int, tag: str = "") -> dict:
    """Sleep ``ms`` milliseconds on the event loop, standing in for a tool of that latency.

    Args:
        ms: How long the call takes, in milliseconds.
        tag: Ignored (the bench pads actions with it to an exact token count).
    """
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms}


@tool
async def noop(tag: str = "") -> dict:
    """Return at once.

    Args:
        tag: Ignored (padding).
    """
    return {}
