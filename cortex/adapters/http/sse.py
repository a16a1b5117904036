"""Server-sent events: the response headers, the wire format, and keep-alives while a source is idle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import TypeVar

from aiohttp import web

from cortex.runs import cancel_and_wait

T = TypeVar("T")

KEEP_ALIVE = b": keep-alive\n\n"
KEEP_ALIVE_S = 15.0


def sse_frame(data: str, *, event_id: int | str | None = None, event: str | None = None) -> bytes:
    """One SSE message (``id:``, ``event:``, one ``data:`` line per line of ``data``)."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


async def open_stream(request: web.Request, headers: dict[str, str] | None = None) -> web.StreamResponse:
    """Start a ``text/event-stream`` response (no caching, no proxy buffering)."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **(headers or {}),
        }
    )
    await response.prepare(request)
    return response


async def with_keep_alive(
    source: AsyncIterator[T], on_idle: Callable[[], Awaitable[object]], every_s: float = KEEP_ALIVE_S
) -> AsyncIterator[T]:
    """Yield what ``source`` yields; call ``on_idle`` whenever it stays silent for ``every_s`` seconds.

    The source runs in its own task, so a silent period never cancels it half-way through an item.
    """
    queue: asyncio.Queue[T] = asyncio.Queue(maxsize=256)

    async def pump() -> None:
        async with aclosing(source) as items:  # type: ignore[type-var]
            async for item in items:
                await queue.put(item)

    pumping = asyncio.create_task(pump())
    getter: asyncio.Future[T] | None = None
    try:
        while True:
            getter = getter or asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, pumping}, timeout=every_s, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                item, getter = getter.result(), None
                yield item
            elif pumping in done:  # the source ended: hand out what it left in the queue, then stop
                getter.cancel()
                getter = None
                while not queue.empty():
                    yield queue.get_nowait()
                pumping.result()  # raises what stopped the source
                return
            else:
                await on_idle()
    finally:
        if getter is not None:
            getter.cancel()
        await cancel_and_wait(pumping)
