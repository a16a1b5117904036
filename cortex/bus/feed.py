"""A continuous pull on a durable consumer: pull requests kept topped up, messages in delivery order.

nats-py's ``fetch`` costs a request, a timer and a task switch per batch and holds a lone
message while it waits for a full batch. A ``PullFeed`` keeps pull requests outstanding on
one inbox (``batch`` messages, ``expires_s``), asks for more as messages arrive, and hands
each message with its delivery metadata (parsed from the ack subject) to a callback, in the
order the consumer delivered them. Gaps in the delivery sequence are visible to the caller:
with one client per consumer and nothing redelivered, the deliveries are contiguous.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.msg import Msg

from cortex.bus.client import Bus

log = logging.getLogger("cortex.bus")

_STATUS = "Status"
_PENDING_MSGS = "Nats-Pending-Messages"


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a delivered message stands: stream sequence, delivery sequence, delivery count, pending."""

    stream_seq: int
    delivery_seq: int
    delivered: int
    pending: int


def delivery_of(reply: str) -> Delivery | None:
    """Parse ``$JS.ACK.[<domain>.<hash>.]<stream>.<consumer>.<n>.<sseq>.<dseq>.<ts>.<pending>[.<token>]``."""
    tokens = reply.split(".")
    if len(tokens) == 9:
        first = 4
    elif len(tokens) >= 11:
        first = 6
    else:
        return None
    try:
        return Delivery(int(tokens[first + 1]), int(tokens[first + 2]), int(tokens[first]), int(tokens[first + 4]))
    except ValueError:
        return None


OnMessage = Callable[[Msg, Delivery], Awaitable[None]]


class PullFeed:
    """Keeps ``batch`` messages requested from a durable pull consumer and hands them to ``on_message``.

    ``on_message`` runs in delivery order, one message at a time (it should hand real work to a
    task). ``room()`` tells how many more messages the caller can take; requests never ask for
    more than that, so a busy caller is not flooded (and messages are not held past their ack wait).
    """

    def __init__(
        self,
        bus: Bus,
        *,
        stream: str,
        durable: str,
        on_message: OnMessage,
        room: Callable[[], int],
        batch: int = 256,
        expires_s: float = 2.0,
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.durable = durable
        self.on_message = on_message
        self.room = room
        self.batch = max(1, batch)
        self.expires_s = expires_s
        self._requested = 0  # messages asked for and not yet delivered nor expired
        self._inbox = bus.nc.new_inbox()
        self._sub = None
        self._last_event = 0.0
        self._wake = asyncio.Event()
        self._draining = False
        self._pause = False  # the server refused a request (e.g. too many acks pending): wait a little

    async def start(self) -> None:
        """Subscribe to the delivery inbox and ask for the first messages."""
        self._sub = await self.bus.nc.subscribe(self._inbox, cb=self._received)
        await self.top_up()

    async def stop(self, *, drain: bool = False) -> None:
        """Drop the delivery inbox (messages in hand stay unacked and are redelivered after ack wait).

        With ``drain``, ask for nothing more but keep taking what the requests still open on the
        server deliver until they expire (the server may not notice the inbox is gone and would
        send them nowhere: they would wait for their ack wait).
        """
        if drain and self._sub is not None:
            self._draining = True
            await asyncio.sleep(self.expires_s + 0.2)
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await asyncio.wait_for(sub.unsubscribe(), 2.0)
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass

    def poke(self) -> None:
        """Tell the feed the caller has room again (a handled message freed a slot)."""
        self._wake.set()

    async def run(self) -> None:
        """Top up requests when there is room; re-ask when a request may have been lost. Until cancelled."""
        loop = asyncio.get_running_loop()
        while self._sub is not None:
            try:
                await asyncio.wait_for(self._wake.wait(), self.expires_s)
            except asyncio.TimeoutError:
                if loop.time() - self._last_event > self.expires_s * 2:
                    self._requested = 0  # no delivery nor expiry notice for two periods: ask afresh
            self._wake.clear()
            if self._pause:
                self._pause = False
                await asyncio.sleep(0.05)
            await self.top_up()

    async def top_up(self) -> None:
        """Ask for more messages if fewer than half a batch are requested and the caller has room."""
        if self._sub is None or self._draining:
            return
        want = min(self.batch, self.room()) - self._requested
        if want <= 0 or (self._requested and want < self.batch // 2):
            return
        self._requested += want
        request = {"batch": want, "expires": int(self.expires_s * 1e9)}
        try:
            await self.bus.nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.durable}",
                json.dumps(request).encode(), reply=self._inbox,
            )
        except Exception:  # noqa: BLE001 - reconnecting: the run loop asks again
            self._requested -= want
            log.debug("pull request on %s/%s not sent", self.stream, self.durable, exc_info=True)

    async def _received(self, msg: Msg) -> None:
        self._last_event = asyncio.get_running_loop().time()
        headers = msg.headers
        if not msg.data and headers and _STATUS in headers:
            self._status(headers)
            self._wake.set()
            return
        delivery = delivery_of(msg.reply or "")
        if delivery is None:
            log.warning("unexpected message on the pull inbox of %s/%s: %s", self.stream, self.durable, msg.subject)
            return
        self._requested = max(0, self._requested - 1)
        await self.on_message(msg, delivery)
        if self._requested < self.batch // 2:
            self._wake.set()

    def _status(self, headers: dict[str, str]) -> None:
        """A request ended (408 expired, 409 limits or leadership) or nothing was there (404)."""
        status = headers.get(_STATUS)
        if status == "100":  # heartbeat
            return
        pending = headers.get(_PENDING_MSGS)
        if pending is not None and pending.isdigit():
            self._requested = max(0, self._requested - int(pending))
        else:
            self._requested = 0
        if status not in ("404", "408"):
            self._pause = True
            log.debug("pull request on %s/%s ended: %s %s", self.stream, self.durable, status,
                      headers.get("Description", ""))
