"""Fixtures for API tests: the app served on a free port against a real nats-server, and HTTP helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from cortex.adapters.http.app import make_app
from cortex.bus.client import Bus
from cortex.bus.embedded import free_port
from tests.api.played_kernel import kernel  # noqa: F401 - a fixture

TOKEN = "test-token-123"


@dataclass
class Api:
    """A running API: its base URL, an HTTP session that sends the token, and the app."""

    url: str
    http: aiohttp.ClientSession
    app: web.Application

    async def call(self, method: str, path: str, **kwargs: object) -> tuple[int, dict]:
        """Send a request; return the status and the JSON body."""
        async with self.http.request(method, self.url + path, **kwargs) as response:
            return response.status, await response.json(content_type=None)


async def serve(bus: Bus, *, token: str | None, local_mode: bool) -> AsyncIterator[Api]:
    """Serve the app on 127.0.0.1 and a free port."""
    app = make_app(bus, token=token, local_mode=local_mode)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            yield Api(f"http://127.0.0.1:{port}", http, app)
    finally:
        await runner.cleanup()


@pytest.fixture
async def api(bus: Bus) -> AsyncIterator[Api]:
    """The API with a bearer token required."""
    async for served in serve(bus, token=TOKEN, local_mode=False):
        yield served


@pytest.fixture
async def local_api(bus: Bus) -> AsyncIterator[Api]:
    """The API in local mode (no token)."""
    async for served in serve(bus, token=None, local_mode=True):
        yield served
