"""Publishing an action's events without waiting for each ack, then confirming them together.

One reply inbox per worker process (``AckInbox``) takes every publish ack: one subscription,
acks decoded with msgspec, no per-publish token, timer or callback chain as with nats-py's
``publish_async``. A ``Pipeline`` sends one action's events in order (the connection keeps it)
and ``confirm`` awaits their acks at once; an event whose ack failed or did not come is
published again through the retrying path with the same message id, so it is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import msgspec
from nats.aio.msg import Msg

from cortex.bus.client import Bus, event_headers, event_subject
from cortex.bus.events import Event, encode


class PubAck(msgspec.Struct):
    """JetStream's reply to a publish."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict | None = None


_decoder = msgspec.json.Decoder(PubAck)


class AckInbox:
    """The reply subject of a process's pipelined publishes, and the futures waiting for their acks."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._prefix = ""
        self._counter = itertools.count()
        self._waiting: dict[str, asyncio.Future[PubAck]] = {}
        self._sub = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Subscribe to the inbox (once)."""
        async with self._lock:
            if self._sub is None:
                prefix = self.bus.nc.new_inbox()
                self._sub = await self.bus.nc.subscribe(f"{prefix}.*", cb=self._on_ack)
                self._prefix = prefix

    async def close(self) -> None:
        """Drop the subscription (best effort: the connection may be gone)."""
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def publish(self, event: Event) -> tuple[str, asyncio.Future[PubAck]]:
        """Publish ``event``; return its reply subject and the future of its ack."""
        if self._sub is None:
            await self.start()
        reply = f"{self._prefix}.{next(self._counter)}"
        future: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        self._waiting[reply] = future
        try:
            await self.bus.nc.publish(event_subject(event), encode(event), reply=reply, headers=event_headers(event))
        except BaseException:
            del self._waiting[reply]
            raise
        return reply, future

    def forget(self, reply: str) -> None:
        """Stop waiting for the ack sent to ``reply``."""
        future = self._waiting.pop(reply, None)
        if future is not None:
            future.cancel()

    async def _on_ack(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.subject, None)
        if future is None or future.done():
            return
        try:
            future.set_result(_decoder.decode(msg.data))
        except (msgspec.DecodeError, msgspec.ValidationError):  # e.g. "no responders": the retrying path decides
            future.set_result(PubAck(error={"description": f"unexpected reply {msg.data[:80]!r}"}))


class Pipeline:
    """One action's events: sent without waiting, confirmed together."""

    def __init__(self, bus: Bus, inbox: AckInbox, *, ack_timeout_s: float = 5.0) -> None:
        self.bus = bus
        self.inbox = inbox
        self.ack_timeout_s = ack_timeout_s
        self._pending: list[tuple[Event, str, asyncio.Future[PubAck]]] = []

    async def send(self, event: Event) -> None:
        """Publish ``event``; its ack is awaited by ``confirm``."""
        reply, future = await self.inbox.publish(event)
        self._pending.append((event, reply, future))

    async def confirm(self) -> list[PubAck | None]:
        """Wait for every ack; return them in order (None for an event that took the retrying path)."""
        pending, self._pending = self._pending, []
        futures = [future for _, _, future in pending if not future.done()]
        try:
            if futures:
                await asyncio.wait(futures, timeout=self.ack_timeout_s)
        except asyncio.CancelledError:
            for _, reply, _ in pending:
                self.inbox.forget(reply)
            raise
        acks: list[PubAck | None] = []
        for event, reply, future in pending:
            ack = future.result() if future.done() and not future.cancelled() else None
            if ack is not None and ack.error is None and ack.seq:
                acks.append(ack)
                continue
            self.inbox.forget(reply)
            await self.bus.publish_event(event)
            acks.append(None)
        return acks
