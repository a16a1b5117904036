"""Model turns: pull turn work from cortex.work.llm, stream it through the protocol parser into events.

The service loop only: the shared durable consumer, one ``TurnRunner`` per work item (kept
alive while it streams), a cache of providers, and shutdown. See docs/llm_pool.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from typing import Any

from nats.aio.msg import Msg

from cortex.adapters.llm.base import Provider
from cortex.adapters.llm.registry import make_provider
from cortex.bus.client import Bus
from cortex.bus.events import ActionFailed, ActionFailedData
from cortex.bus.work import ActionWork, AnyWork, TurnWork
from cortex.workers.base import FeedConsumer, HandlerTasks, keep_alive, make_event, pool_consumer, worker_id
from cortex.workers.turn_runner import TurnRunner, TurnSettings

log = logging.getLogger("cortex.workers.llm")

POOL = "llm"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cortex worker llm``."""
    parser.add_argument("--concurrency", type=int, default=4, help="turns run at once (default 4)")
    parser.add_argument(
        "--chunk-chars", type=int, default=256,
        help="flush turn.chunk and text deltas after this many characters (default 256)",
    )
    parser.add_argument(
        "--chunk-ms", type=float, default=50.0,
        help="flush pending text at the latest this many ms after it arrived (default 50)",
    )
    parser.add_argument(
        "--retry-grace-s", type=float, default=2.0,
        help="how long a retryable failure of a sync action may still be retried by the kernel (default 2)",
    )
    parser.add_argument(
        "--drain-s", type=float, default=30.0,
        help="on shutdown, how long running turns may finish before they are handed back (default 30)",
    )


async def serve(bus: Bus, args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Run the pool until ``stop`` is set."""
    settings = TurnSettings(
        chunk_chars=args.chunk_chars,
        chunk_delay_s=args.chunk_ms / 1000,
        retry_grace_s=args.retry_grace_s,
        worker=worker_id(POOL),
    )
    pool = LlmPool(bus, settings, concurrency=args.concurrency)
    await pool.serve(stop, drain_s=args.drain_s)


class LlmPool:
    """One worker process of the llm pool."""

    def __init__(self, bus: Bus, settings: TurnSettings | None = None, *, concurrency: int = 4) -> None:
        self.bus = bus
        self.settings = settings or TurnSettings(worker=worker_id(POOL))
        self.concurrency = concurrency
        self._providers: dict[tuple[str, str, str], Provider] = {}

    def provider(self, name: str, model: str, options: dict[str, Any]) -> Provider:
        """The provider for a turn, built once per (name, model, options) and reused."""
        key = (name, model, json.dumps(options, sort_keys=True, default=str))
        provider = self._providers.get(key)
        if provider is None:
            provider = self._providers[key] = make_provider(name, model, options)
        return provider

    async def run_turn(self, work: TurnWork) -> str:
        """Run one turn; its stop reason, ``failed`` or ``skipped``."""
        return await TurnRunner(self.bus, work, self.provider, self.settings).run()

    async def handle(self, item: AnyWork, msg: Msg) -> None:
        """Handle one work item (the consumer acks it when this returns)."""
        if isinstance(item, ActionWork):
            await self._refuse(item)
            return
        async with keep_alive(msg):
            outcome = await self.run_turn(item)
        log.info("%s %s: %s", item.run_id, item.request.turn_id, outcome)

    async def _refuse(self, item: ActionWork) -> None:
        """``llm`` actions (model sub-calls) are not run by this pool yet: fail them clearly."""
        data = ActionFailedData(
            action_id=item.action_id,
            code="unsupported_action",
            error=f"the llm pool does not run {item.type!r} actions (model sub-calls) yet",
            attempt=item.attempt,
        )
        event_id = f"{item.run_id}:{item.action_id}:{item.attempt}:failed"
        await self.bus.publish_event(make_event(ActionFailed, item, data, event_id=event_id))

    async def serve(self, stop: asyncio.Event, *, drain_s: float = 30.0) -> None:
        """Consume until ``stop`` is set; give running turns ``drain_s`` to finish, then hand them
        back (nak: another worker runs them as a new attempt) and close the providers."""
        tasks = HandlerTasks()
        consumer = FeedConsumer(pool_consumer(self.bus, POOL, tasks.wrap(self.handle), concurrency=self.concurrency))
        runner = asyncio.create_task(consumer.run())
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({runner, stopped}, return_when=asyncio.FIRST_COMPLETED)
            consumer.stop()
            tasks.closed = True  # items still being fetched go straight back
            if tasks.tasks:
                await asyncio.wait(set(tasks.tasks), timeout=drain_s)
            if tasks.tasks:
                log.warning("turns still running after %.1fs: handing them back", drain_s)
        finally:
            stopped.cancel()
            consumer.stop()
            await tasks.cancel_all()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
            await self.aclose()

    async def aclose(self) -> None:
        """Release every cached provider."""
        providers, self._providers = list(self._providers.values()), {}
        for provider in providers:
            with contextlib.suppress(Exception):
                await provider.aclose()
