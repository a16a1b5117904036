"""``cortex api``: serve the HTTP API (runs, events, read models, OpenAI-compatible chat)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import signal

from cortex.bus.client import Bus
from cortex.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def register(sub: argparse._SubParsersAction) -> None:
    """Add the api command."""
    api = sub.add_parser(
        "api", help="serve the HTTP API",
        description="Serve the HTTP API (see docs/api.md). A bearer token (CORTEX_API_TOKEN) is required "
        "unless the API is bound to a loopback address and no token is set (local mode).",
    )
    api.add_argument("--host", default=os.environ.get("CORTEX_API_HOST", DEFAULT_HOST),
                     help=f"address to bind (default {DEFAULT_HOST}, env CORTEX_API_HOST)")
    api.add_argument("--port", type=int, default=int(os.environ.get("CORTEX_API_PORT", DEFAULT_PORT)),
                     help=f"port (default {DEFAULT_PORT}, env CORTEX_API_PORT)")
    api.set_defaults(func=cmd_api)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_mode(host: str, token: str | None) -> bool:
    """Local mode (no token needed) when bound to loopback without a token; a public bind needs a token."""
    if token:
        return False
    if not is_loopback(host):
        raise ConfigError(f"binding the API to {host} needs a bearer token: set CORTEX_API_TOKEN")
    return True


async def cmd_api(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM."""
    from aiohttp import web  # imported here so that other commands never load the HTTP stack

    from cortex.adapters.http.app import make_app

    token = os.environ.get("CORTEX_API_TOKEN") or None
    local_mode = auth_mode(args.host, token)
    bus = await Bus.from_env(name="cortex-api")
    runner = web.AppRunner(make_app(bus, token=token, local_mode=local_mode), handler_cancellation=True)
    try:
        await bus.provision()
        await runner.setup()
        try:
            await web.TCPSite(runner, args.host, args.port).start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
                              "choose another with --port") from None
        mode = "local mode, no token" if local_mode else "bearer token required"
        print(f"Cortex API on http://{args.host}:{args.port} ({mode}); NATS {bus.url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
        await bus.close()
    return 0
