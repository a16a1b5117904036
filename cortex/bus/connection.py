"""Connecting to NATS with reconnects, and mapping connection failures to NatsUnavailable."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client
from nats.errors import NoServersError

from cortex.errors import NatsUnavailable

log = logging.getLogger("cortex.bus")


def server_addresses(url: str) -> list[tuple[str, int]]:
    """(host, port) of each server in a comma-separated NATS URL list."""
    addresses = []
    for part in url.split(","):
        parsed = urlsplit(part.strip() if "://" in part else f"nats://{part.strip()}")
        addresses.append((parsed.hostname or "127.0.0.1", parsed.port or 4222))
    return addresses


async def any_server_answers(url: str, timeout_s: float = 2.0) -> str:
    """Return '' if a TCP connection to one of the servers succeeds, else the last error."""
    error = "no address"
    for host, port in server_addresses(url):
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        except (OSError, asyncio.TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            continue
        writer.close()
        return ""
    return error


async def connect_nats(url: str, *, name: str = "cortex", connect_timeout: float = 2.0) -> Client:
    """Connect to ``url``; reconnect forever once connected; raise NatsUnavailable if nobody answers."""
    problem = await any_server_answers(url, connect_timeout)
    if problem:
        raise NatsUnavailable(url, problem)

    async def on_error(exc: Exception) -> None:
        log.debug("nats: %s", exc)

    client: list[Client] = []

    async def on_disconnected() -> None:
        if client and not (client[0].is_closed or client[0].is_draining):
            log.warning("nats: disconnected from %s, reconnecting", url)

    async def on_reconnected() -> None:
        log.warning("nats: reconnected to %s", url)

    try:
        nc = await nats.connect(
            url.split(",") if "," in url else url,
            name=name,
            connect_timeout=connect_timeout,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
        )
    except (NoServersError, OSError, asyncio.TimeoutError) as exc:
        raise NatsUnavailable(url, str(exc) or type(exc).__name__) from None
    client.append(nc)
    return nc
