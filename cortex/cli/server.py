"""``cortex up``, ``cortex down`` and ``cortex status``: the local deployment and what it holds."""

from __future__ import annotations

import argparse
import asyncio
import signal

from rich.console import Console
from rich.table import Table

from cortex.bus.client import Bus
from cortex.bus.embedded import EmbeddedServer
from cortex.bus.settings import DEFAULT_PORT, BusSettings
from cortex.bus import subjects


def register(sub: argparse._SubParsersAction) -> None:
    """Add the server commands."""
    up = sub.add_parser(
        "up",
        help="start the local deployment (embedded NATS with JetStream)",
        description="Start a real nats-server with JetStream on a data directory under CORTEX_HOME, "
        "provision streams, consumers and KV buckets, and print its URL. An already running embedded "
        "server is reused. With CORTEX_NATS_URL set, no server is started: the external one is provisioned.",
    )
    up.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"client port (default {DEFAULT_PORT})")
    up.add_argument("--detach", action="store_true", help="return once the server is ready (it keeps running)")
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop what `cortex up` started", description="Stop the embedded server.")
    down.set_defaults(func=cmd_down)

    status = sub.add_parser(
        "status",
        help="show the server, streams and consumers",
        description="Show the NATS server, each Cortex stream (messages, bytes) and each consumer "
        "(pending, redelivered).",
    )
    status.set_defaults(func=cmd_status)


async def ensure_server(port: int = DEFAULT_PORT) -> tuple[str, bool]:
    """The URL to use: CORTEX_NATS_URL, or the embedded server (started if needed); and whether we started it."""
    settings = BusSettings.from_env()
    if settings.url:
        return settings.url, False
    state, started = await EmbeddedServer().start(port)
    return state.url, started


async def cmd_up(args: argparse.Namespace) -> int:
    """Start (or reuse) the server, provision it and print its URL."""
    console = Console()
    url, started = await ensure_server(args.port)
    bus = await Bus.connect(url, name="cortex-up", settings=BusSettings.from_env().streams)
    try:
        await bus.provision()
    finally:
        await bus.close()
    verb = "started" if started else "using running"
    console.print(f"[green]✓[/] {verb} NATS with JetStream, streams and buckets provisioned")
    print(url, flush=True)
    if args.detach or BusSettings.from_env().url:
        return 0
    console.print("[dim]press Ctrl-C to stop[/]")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if started:
        await EmbeddedServer().stop()
        console.print("stopped")
    return 0


async def cmd_down(args: argparse.Namespace) -> int:
    """Stop the embedded server if it runs."""
    stopped = await EmbeddedServer().stop()
    print("stopped the embedded NATS server" if stopped else "no embedded NATS server is running")
    return 0


async def cmd_status(args: argparse.Namespace) -> int:
    """Print server, stream and consumer figures."""
    console = Console()
    bus = await Bus.from_env(name="cortex-status")
    try:
        info = bus.nc._server_info
        console.print(
            f"server [bold]{info.get('server_name') or info.get('server_id')}[/] "
            f"version {info.get('version')} at {bus.url}"
        )
        streams = Table("stream", "subjects", "messages", "bytes", "consumers", title="streams")
        consumers = Table("stream", "consumer", "pending", "ack pending", "redelivered", title="consumers")
        for name in (subjects.EVENTS_STREAM, subjects.WORK_STREAM, subjects.SYSTEM_STREAM, subjects.DEAD_LETTER_STREAM):
            try:
                si = await bus.js.stream_info(name)
            except Exception:  # noqa: BLE001 - a missing stream is shown, not fatal
                streams.add_row(name, "-", "not provisioned (run `cortex up`)", "", "")
                continue
            streams.add_row(
                name, ", ".join(si.config.subjects or []), str(si.state.messages), str(si.state.bytes),
                str(si.state.consumer_count),
            )
            for ci in await bus.js.consumers_info(name):
                consumers.add_row(
                    name, ci.name, str(ci.num_pending), str(ci.num_ack_pending), str(ci.num_redelivered)
                )
        console.print(streams)
        console.print(consumers)
    finally:
        await bus.close()
    return 0
