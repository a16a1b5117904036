"""Publishing a turn's events in order without a round trip each: acks are settled at checkpoints."""

from __future__ import annotations

import asyncio
import logging

from nats.js.api import PubAck

from cortex.bus.client import Bus, event_headers, event_subject
from cortex.bus.events import Event, encode

log = logging.getLogger("cortex.workers.llm")


class TurnPublisher:
    """Sends events at once, in order, on one connection; ``settle()`` waits for their acks.

    An event whose ack fails is published again through ``Bus.publish_event`` with the same
    message id (so it is stored once), which may put it after events sent later: only when
    JetStream failed to take it the first time.
    """

    def __init__(self, bus: Bus, window: int = 256, ack_timeout_s: float = 5.0) -> None:
        self.bus = bus
        self.window = window
        self.ack_timeout_s = ack_timeout_s
        self._pending: list[tuple[Event, asyncio.Future[PubAck]]] = []

    async def send(self, event: Event) -> None:
        """Send one event now; settle first if ``window`` acks are outstanding."""
        if len(self._pending) >= self.window:
            await self.settle()
        future = await self.bus.js.publish_async(
            event_subject(event), encode(event), headers=event_headers(event)
        )
        self._pending.append((event, future))

    async def send_and_wait(self, event: Event) -> int:
        """Send one event and wait until it (and everything before it) is stored; its sequence."""
        await self.send(event)
        return await self.settle()

    async def settle(self) -> int:
        """Wait for every outstanding ack (re-publishing failures); the last event's sequence."""
        pending, self._pending = self._pending, []
        if not pending:
            return 0
        await asyncio.wait([f for _, f in pending], timeout=self.ack_timeout_s)
        seq = 0
        for event, future in pending:
            if future.done() and not future.cancelled() and future.exception() is None:
                seq = future.result().seq
            else:
                future.cancel()
                log.warning("no ack for %s; publishing it again", event.id)
                seq = await self.bus.publish_event(event)
        return seq
