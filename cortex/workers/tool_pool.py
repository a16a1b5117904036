"""Tool pool: run tool actions from cortex.work.tool (and plugin lanes) and publish their outcomes.

``cortex worker tool [--plugins PATH...]`` serves the built-in plugins and those at PATH
(manifest files, or folders of them): one durable consumer on ``cortex.work.tool`` and one on
``cortex.work.tool.<lane>`` for each lane a plugin asks for. See docs/plugins.md, "Tool pool".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from cortex.bus.client import Bus
from cortex.workers.action_log import ActionLog, LogReader
from cortex.workers.base import FeedConsumer, HandlerTasks, pool_consumer, worker_id
from cortex.workers.cancel_watch import CancelWatch
from cortex.workers.plugin_host import POOL, PluginHost, load_manifests
from cortex.workers.plugin_store import applied_plugins, follow_applied_plugins, system_stream_position
from cortex.workers.tool_executor import ToolExecutor

log = logging.getLogger("cortex.workers.tool")

"""Lifetime of the pool's open pull requests: a lost one (server restart) is replaced after twice this."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cortex worker tool``."""
    parser.add_argument(
        "--plugins", nargs="+", action="extend", default=[], metavar="PATH",
        help="plugin manifests to serve besides the built-in ones: files, or folders holding *.yaml "
        "or */plugin.yaml",
    )
    parser.add_argument("--no-builtins", action="store_true", help="do not serve the built-in plugins")
    parser.add_argument(
        "--no-applied", action="store_true",
        help="do not serve plugins applied with `cortex apply` (by default they are loaded from the "
        "manifests bucket at start and whenever one is applied)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="actions run at once per subject (default 16)"
    )
    parser.add_argument(
        "--heartbeat", type=float, default=10.0, metavar="S",
        help="seconds between plugin.heartbeat events (default 10; 0 turns them off)",
    )
    parser.add_argument(
        "--ack-wait", type=float, default=30.0, metavar="S",
        help="seconds before JetStream redelivers a work item nobody reported on; running actions "
        "report in-progress every third of it (default 30; used when the pool's consumer is created)",
    )
    parser.add_argument(
        "--drain", type=float, default=10.0, metavar="S",
        help="on stop, seconds to let running actions finish before they are handed back (default 10)",
    )


async def serve(bus: Bus, args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Serve the plugins until ``stop`` is set; then drain, hand back what still runs and unregister."""
    worker = worker_id(POOL)
    manifests = load_manifests(args.plugins, builtins=not args.no_builtins)
    local = {m.name for m in manifests}
    applied_from = await system_stream_position(bus)
    if not args.no_applied:
        manifests += await applied_plugins(bus, skip=local)
    host = PluginHost(bus, manifests, worker=worker, heartbeat_s=args.heartbeat)
    reader, cancels = LogReader(bus), CancelWatch(bus)
    tasks = HandlerTasks()
    await reader.start()
    await cancels.start()
    await bus.acks.start()
    try:
        await host.start()
        executor = ToolExecutor(
            bus, host, ActionLog(reader), cancels, worker=worker, keep_alive_s=min(5.0, args.ack_wait / 3),
        )
        consumers = [
            FeedConsumer(pool_consumer(
                bus, POOL, tasks.wrap(executor.handle), lane=lane, concurrency=args.concurrency,
                ack_wait_s=args.ack_wait,
            ))
            for lane in host.lanes
        ]
        runners = [asyncio.create_task(consumer.run()) for consumer in consumers]
        follower = None if args.no_applied else asyncio.create_task(
            follow_applied_plugins(bus, host, skip=local, start_seq=applied_from)
        )
        log.info("%s serves %d tools on %d subjects", worker, len(host.tools), len(consumers))
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([stopping, *runners], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if follower is not None:
                follower.cancel()
            for consumer in consumers:
                consumer.stop()
            await asyncio.wait(runners, timeout=args.drain)
            await tasks.cancel_all()
            for runner in runners:
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
    finally:
        await host.close()
        await cancels.close()
        await reader.close()
