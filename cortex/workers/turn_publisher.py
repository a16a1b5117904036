"""Publishing a turn's events in order without a round trip each: acks are settled at checkpoints."""

from __future__ import annotations

from cortex.bus.acked import Batch
from cortex.bus.client import Bus
from cortex.bus.events import Event


class TurnPublisher:
    """Sends events at once, in order, on one connection; ``settle()`` waits for their acks.

    An event whose ack fails is published again through the retrying path with the same message
    id (so it is stored once), which may put it after events sent later: only when JetStream
    failed to take it the first time.
    """

    def __init__(self, bus: Bus, window: int = 256, ack_timeout_s: float = 5.0) -> None:
        self.bus = bus
        self.window = window
        self._batch = Batch(bus, ack_timeout_s=ack_timeout_s)

    async def send(self, event: Event) -> None:
        """Send one event now; settle first if ``window`` acks are outstanding."""
        if len(self._batch) >= self.window:
            await self.settle()
        await self._batch.send_event(event)

    async def send_and_wait(self, event: Event) -> int:
        """Send one event and wait until it (and everything before it) is stored; its sequence."""
        await self.send(event)
        return await self.settle()

    async def settle(self) -> int:
        """Wait for every outstanding ack (re-publishing failures); the last event's sequence."""
        acks = await self._batch.confirm()
        return acks[-1].seq if acks else 0
