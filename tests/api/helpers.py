"""Small helpers for API tests: waiting for a run's outcome, reading SSE, folding the read models."""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing

import aiohttp

from cortex.bus.client import Bus
from cortex.bus.events import Event
from cortex.projections.projector import Projector
from cortex.runs import follow_run


async def outcome(bus: Bus, run_id: str, timeout: float = 15) -> Event:
    """The event that ended the run (waits for it)."""

    async def last() -> Event:
        async with aclosing(follow_run(bus, run_id)) as events:
            async for event in events:
                pass
        return event

    return await asyncio.wait_for(last(), timeout)


async def project(bus: Bus) -> None:
    """Fold everything in the log into the read models, as `cortex projections serve` does."""
    projector = Projector(bus)
    await projector.ensure()
    await projector.sync_definitions()
    await projector.catch_up()


async def read_sse(response: aiohttp.ClientResponse, until: str, timeout: float = 15) -> list[tuple[int, dict]]:
    """(id, event) pairs from an SSE response, up to and including the first event of type ``until``."""
    items: list[tuple[int, dict]] = []

    async def read() -> None:
        event_id, data = None, []
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and data:
                event = json.loads("\n".join(data))
                items.append((event_id, event))
                event_id, data = None, []
                if event["type"] == until:
                    return

    await asyncio.wait_for(read(), timeout)
    return items
