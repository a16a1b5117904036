"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import asyncio

from cortex.bus import subjects
from cortex.bus.client import Bus


async def wait_registered(bus: Bus, plugin: str, timeout_s: float = 30.0) -> None:
    """Wait for a tool worker's ``plugin.registered`` of ``plugin`` (stored or still to come)."""

    async def first() -> None:
        async for event, _ in bus.watch(
            subjects.system_event("plugin.registered"), stream=subjects.SYSTEM_STREAM, from_start=True
        ):
            if event.data.plugin == plugin:
                return

    await asyncio.wait_for(first(), timeout_s)
