"""``GET /api/events``: events as server-sent events, one run or all, resumable with Last-Event-ID."""

from __future__ import annotations

import logging
from contextlib import aclosing

from aiohttp import web

from cortex.adapters.http.errors import api_error
from cortex.adapters.http.sse import KEEP_ALIVE, open_stream, sse_frame, with_keep_alive
from cortex.adapters.http.state import BUS
from cortex.bus import subjects
from cortex.bus.events import encode

log = logging.getLogger("cortex.api")


def resume_from(request: web.Request) -> int | None:
    """The stream sequence to start at: one after ``Last-Event-ID`` (header or query), else None."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise api_error(400, f"Last-Event-ID must be a stream sequence (an integer), not {raw!r}",
                        code="invalid_last_event_id")
    return int(raw) + 1


async def stream_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``id:`` is the stream sequence, ``data:`` the event's JSON envelope.

    With ``?run=ID`` one run from its first event; without, every run from now. ``Last-Event-ID``
    resumes after that sequence. The stream stays open (keep-alive comments) until the client leaves.
    """
    run_id = request.query.get("run")
    filter_subject = subjects.run_events(run_id) if run_id else subjects.EVENTS_WILDCARD
    start_seq = resume_from(request)
    response = await open_stream(request)
    source = request.app[BUS].watch(filter_subject, from_start=bool(run_id), start_seq=start_seq)
    try:
        async with aclosing(with_keep_alive(source, lambda: response.write(KEEP_ALIVE))) as events:
            async for event, seq in events:
                await response.write(sse_frame(encode(event).decode(), event_id=seq))
    except ConnectionResetError:
        pass  # the client went away
    except Exception as exc:  # noqa: BLE001 - headers are sent: all we can do is end the stream
        log.warning("event stream for %s ended: %s", filter_subject, exc)
    return response
