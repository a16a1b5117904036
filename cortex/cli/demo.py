"""``cortex demo bus``: a visible round trip through JetStream."""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import datetime, timezone

from rich.console import Console

from cortex.bus.client import Bus
from cortex.bus.events import Ping, PingData
from cortex.bus import subjects
from cortex.cli.server import ensure_server


def register(sub: argparse._SubParsersAction) -> None:
    """Add the demo command."""
    demo = sub.add_parser("demo", help="run a demonstration", description="Run a demonstration.")
    demo_sub = demo.add_subparsers(dest="demo", metavar="DEMO", required=True)
    bus_demo = demo_sub.add_parser(
        "bus", help="publish events of a run and read them back",
        description="Start (or reuse) the embedded server, publish a few events of a fresh run with "
        "deduplication and optimistic concurrency, and read them back live and from the log.",
    )
    bus_demo.add_argument("--events", type=int, default=5, help="how many events (default 5)")
    bus_demo.set_defaults(func=cmd_demo_bus)


async def cmd_demo_bus(args: argparse.Namespace) -> int:
    """Publish ``--events`` pings on a new run, watch them arrive, then replay the run's history."""
    console = Console()
    url, _ = await ensure_server()
    bus = await Bus.connect(url, name="cortex-demo")
    try:
        await bus.provision()
        run_id = "demo-" + uuid.uuid4().hex[:8]
        console.print(f"run [bold]{run_id}[/] on {url}; subject {subjects.run_events(run_id)}")
        received: asyncio.Queue = asyncio.Queue()

        async def follow() -> None:
            async for event, seq in bus.watch(subjects.run_events(run_id), from_start=True):
                await received.put((event, seq, time.perf_counter()))

        follower = asyncio.create_task(follow())
        last_seq = 0
        for i in range(args.events):
            event = Ping(
                id=f"{run_id}:{i}", run_id=run_id, time=datetime.now(timezone.utc),
                data=PingData(text=f"hello #{i}", seq=i),
            )
            sent = time.perf_counter()
            last_seq = await bus.publish_event(event, expected_last_seq=last_seq)
            got, seq, arrived = await asyncio.wait_for(received.get(), 5)
            console.print(
                f"  published {got.type} seq={seq} {got.data.text!r}  "
                f"round trip {1000 * (arrived - sent):.2f} ms"
            )
        again = await bus.publish_event(event, expected_last_seq=None)
        console.print(f"  re-published the last event: deduplicated to seq={again} (no new message)")
        follower.cancel()
        history = await bus.read_run(run_id)
        console.print(f"history of {run_id}: {len(history.events)} events, last sequence {history.last_seq}")
        return 0 if len(history.events) == args.events else 1
    finally:
        await bus.close()
