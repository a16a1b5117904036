"""``cortex up``, ``cortex down`` and ``cortex status``: the local deployment and what it holds."""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cortex.bus.client import Bus
from cortex.bus.embedded import EmbeddedServer, resolve_url
from cortex.bus.settings import DEFAULT_PORT, BusSettings, cortex_home
from cortex.bus import subjects
from cortex.cli.api import DEFAULT_HOST as DEFAULT_API_HOST, DEFAULT_PORT as DEFAULT_API_PORT
from cortex.cli.deployment import (
    RECORD_FILE,
    log_line,
    running_supervisor,
    start_detached,
    stop_signal,
    supervise_until_signal,
)
from cortex.supervisor import stop_recorded


def register(sub: argparse._SubParsersAction) -> None:
    """Add the server commands."""
    up = sub.add_parser(
        "up",
        help="start the local deployment (NATS, kernel, worker pools, projections, API)",
        description="Start a real nats-server with JetStream on a data directory under CORTEX_HOME (or use "
        "CORTEX_NATS_URL), provision streams, consumers and KV buckets, then start and supervise a kernel, one "
        "worker per pool, the projections and the HTTP API (a crashed process is restarted with backoff; logs "
        "in CORTEX_HOME/logs/<name>.log), and apply the manifests folder whenever it changes.",
    )
    up.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"NATS client port (default {DEFAULT_PORT})")
    up.add_argument("--detach", action="store_true",
                    help="return once everything is started (it keeps running; `cortex down` stops it)")
    up.add_argument("--server-only", action="store_true", help="start NATS only (no kernel, pools, projections, API)")
    up.add_argument("--manifests", metavar="DIR",
                    help="manifests folder to apply and watch (default ./manifests if it exists, else CORTEX_HOME/manifests)")
    up.add_argument("--api-host", default=DEFAULT_API_HOST, help=f"address of the HTTP API (default {DEFAULT_API_HOST})")
    up.add_argument("--api-port", type=int, default=DEFAULT_API_PORT, help=f"port of the HTTP API (default {DEFAULT_API_PORT})")
    up.add_argument("--supervise", action="store_true", help=argparse.SUPPRESS)  # the background supervisor of --detach
    up.set_defaults(func=cmd_up)

    down = sub.add_parser(
        "down", help="stop what `cortex up` started",
        description="Stop the processes `cortex up` supervises (kernel, pools, projections, API), then the embedded server.",
    )
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
    """Start (or reuse) the server, provision it, then run the deployment (foreground or detached)."""
    console = Console()
    if args.supervise:  # the background half of --detach
        url = BusSettings.from_env().url or resolve_url()
        await supervise_until_signal(url, args.api_host, args.api_port, args.manifests, log_line)
        return 0
    url, started = await ensure_server(args.port)
    bus = await Bus.connect(url, name="cortex-up", settings=BusSettings.from_env().streams)
    try:
        await bus.provision()
    finally:
        await bus.close()
    verb = "started" if started else "using running"
    console.print(f"[green]✓[/] {verb} NATS with JetStream, streams and buckets provisioned")
    print(url, flush=True)
    if not args.server_only and (supervisor := running_supervisor()):
        console.print(f"[green]✓[/] processes already running (supervisor pid {supervisor})")
        return 0
    if args.detach or (args.server_only and BusSettings.from_env().url):
        if not args.server_only:
            names, skipped = await start_detached(url, args.api_host, args.api_port, args.manifests)
            console.print(f"[green]✓[/] started {', '.join(names)} in the background; logs in {cortex_home() / 'logs'}")
            if skipped:
                console.print(f"[yellow]skipped {', '.join(skipped)}: not available in this install[/]")
        return 0
    console.print("[dim]press Ctrl-C to stop[/]")
    if args.server_only:
        await stop_signal().wait()
    else:
        await supervise_until_signal(
            url, args.api_host, args.api_port, args.manifests,
            lambda message: console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(message)}"),
        )
    if started:
        await EmbeddedServer().stop()
        console.print("stopped")
    return 0


async def cmd_down(args: argparse.Namespace) -> int:
    """Stop the supervised processes, then the embedded server."""
    stopped = await stop_recorded(cortex_home() / RECORD_FILE)
    if stopped:
        print("stopped " + ", ".join(stopped))
    server = await EmbeddedServer().stop()
    print("stopped the embedded NATS server" if server else "no embedded NATS server is running")
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
