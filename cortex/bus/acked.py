"""Publishing without a round trip per message: acks answered on one inbox, settled together.

``AckInbox`` is one reply subject per connection (``Bus.acks``): one subscription, acks decoded
with msgspec, no token, timer or callback chain per publish as with nats-py's ``publish`` and
``publish_async``. A ``Batch`` sends messages in order as they come (the connection keeps the
order) and ``confirm`` awaits their acks at once. A message whose ack failed or did not come is
published again through ``Bus.publish_message`` (retrying, same message id, so never stored
twice); a refused expected-sequence check is a ``ConcurrencyConflict``, raised once every
message of the batch is settled.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from cortex.bus.events import Event
from cortex.bus.messages import (
    ERR_WRONG_LAST_SEQUENCE,
    HDR_EXPECTED_SEQ,
    HDR_EXPECTED_SUBJECT,
    Message,
    event_message,
)
from cortex.errors import ConcurrencyConflict

if TYPE_CHECKING:
    from cortex.bus.client import Bus

class PubAck(msgspec.Struct):
    """JetStream's reply to a publish; ``retried`` marks one that came from the retrying path."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict | None = None
    retried: bool = False


_decoder = msgspec.json.Decoder(PubAck)


class AckInbox:
    """The reply subject of a connection's pipelined publishes, and the futures awaiting acks."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._prefix = ""
        self._counter = itertools.count()
        self._waiting: dict[str, asyncio.Future[PubAck]] = {}
        self._sub = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Subscribe to the inbox (once)."""
        async with self._lock:
            if self._sub is None:
                prefix = self.nc.new_inbox()
                self._sub = await self.nc.subscribe(f"{prefix}.*", cb=self._on_ack)
                self._prefix = prefix

    async def send(self, subject: str, payload: bytes, headers: dict[str, str]) -> tuple[str, asyncio.Future[PubAck]]:
        """Publish without waiting; the reply subject and the future of the ack."""
        if self._sub is None:
            await self.start()
        reply = f"{self._prefix}.{next(self._counter)}"
        future: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        self._waiting[reply] = future
        try:
            await self.nc.publish(subject, payload, reply=reply, headers=headers)
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
        except (msgspec.DecodeError, msgspec.ValidationError):  # e.g. "no responders": retried
            future.set_result(PubAck(error={"description": f"unexpected reply {msg.data[:80]!r}"}))


class Batch:
    """Messages sent at once, in order; ``confirm`` settles their acks together."""

    def __init__(self, bus: Bus, *, ack_timeout_s: float = 5.0) -> None:
        self.bus = bus
        self.ack_timeout_s = ack_timeout_s
        self._pending: list[tuple[Message, str, asyncio.Future[PubAck]]] = []

    def __len__(self) -> int:
        return len(self._pending)

    async def send(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Publish one message now; its ack is awaited by ``confirm``."""
        reply, future = await self.bus.acks.send(subject, payload, headers)
        self._pending.append(((subject, payload, headers), reply, future))

    async def send_event(self, event: Event) -> None:
        """Publish one event now (its subject and headers as ``Bus.publish_event`` sets them)."""
        await self.send(*event_message(event))

    async def confirm(self) -> list[PubAck]:
        """Wait for every ack sent so far; return them in order (the batch is empty after).

        A missing or failed ack takes the retrying path (its ack then has ``retried`` set and
        ``duplicate`` unknown, False). The first failure (``ConcurrencyConflict`` for a refused
        expected sequence, ``PublishFailed`` when the retrying path gives up) is raised once
        every message is settled.
        """
        pending, self._pending = self._pending, []
        waiting = [future for _, _, future in pending if not future.done()]
        try:
            if waiting:
                await asyncio.wait(waiting, timeout=self.ack_timeout_s)
        except asyncio.CancelledError:
            for _, reply, _ in pending:
                self.bus.acks.forget(reply)
            raise
        acks: list[PubAck] = []
        failure: Exception | None = None
        for (subject, payload, headers), reply, future in pending:
            ack = future.result() if future.done() and not future.cancelled() else None
            if ack is not None and ack.error is None and ack.seq:
                acks.append(ack)
                continue
            self.bus.acks.forget(reply)
            if ack is not None and ack.error and ack.error.get("err_code") == ERR_WRONG_LAST_SEQUENCE:
                failure = failure or ConcurrencyConflict(
                    headers.get(HDR_EXPECTED_SUBJECT, subject),
                    int(headers.get(HDR_EXPECTED_SEQ, "0")),
                    str(ack.error.get("description", "")),
                )
                acks.append(ack)
                continue
            try:
                seq = await self.bus.publish_message(subject, payload, headers)
            except Exception as exc:  # noqa: BLE001 - raised once every message is settled
                failure = failure or exc
                seq = 0
            acks.append(PubAck(seq=seq, retried=True))
        if failure is not None:
            raise failure
        return acks
