"""Real local aiohttp servers for the HTTP provider tests: recorded requests and SSE writing."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request, "Recorder"], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    """One request the server received."""

    at: float
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Recorder:
    """What the server saw, shared between the handler and the test."""

    requests: list[Seen] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve(path: str, handler: Handler) -> AsyncIterator[tuple[str, Recorder]]:
    """Serve POST ``path`` on 127.0.0.1 (free port); yield the root URL and the recorder."""
    recorder = Recorder()

    async def route(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        recorder.requests.append(Seen(time.monotonic(), dict(request.headers), body))
        return await handler(request, recorder)

    app = web.Application()
    app.router.add_post(path, route)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", recorder
    finally:
        await runner.cleanup()


async def start_sse(request: web.Request) -> web.StreamResponse:
    """Begin a 200 text/event-stream response."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    return response


async def send_event(response: web.StreamResponse, data: Any, event: str | None = None) -> None:
    """Write one SSE event (``data`` JSON-encoded unless it is a string)."""
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    await response.write(f"{head}data: {text}\n\n".encode())


def json_error(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON error answer."""
    return web.json_response(body, status=status, headers=headers)
