"""Publishing to JetStream with the acks answered on one inbox: no new inbox, token or timer per message.

``Bus._publish`` goes through nats-py's request (a random token, a future and a timer per
publish). ``AckedPublisher.publish_all`` sends a group of messages at once, awaits their acks
together and hands back the stream sequences in order; a refused expected-sequence check is a
``ConcurrencyConflict``, and a message whose ack failed otherwise or did not come is published
again through ``Bus._publish`` (retrying, same message id, so never stored twice).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import msgspec
from nats.aio.msg import Msg

from cortex.bus.client import HDR_EXPECTED_SEQ, HDR_EXPECTED_SUBJECT, Bus
from cortex.errors import ConcurrencyConflict

_WRONG_LAST_SEQUENCE = 10071


class PubAck(msgspec.Struct):
    """JetStream's reply to a publish."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict | None = None


_decoder = msgspec.json.Decoder(PubAck)
_UNREADABLE = PubAck(error={"description": "unreadable ack"})

Message = tuple[str, bytes, dict[str, str]]
"""(subject, payload, headers) of one publish."""


class AckedPublisher:
    """Publishes groups of messages with their acks on one shared inbox."""

    def __init__(self, bus: Bus, *, ack_timeout_s: float = 2.0) -> None:
        self.bus = bus
        self.ack_timeout_s = ack_timeout_s
        self._prefix = bus.nc.new_inbox()
        self._waiting: dict[str, asyncio.Future[PubAck]] = {}
        self._tokens = itertools.count()
        self._sub = None

    async def start(self) -> None:
        """Subscribe to the ack inbox (once)."""
        if self._sub is None:
            self._sub = await self.bus.nc.subscribe(f"{self._prefix}.*", cb=self._ack)

    async def close(self) -> None:
        """Drop the ack inbox."""
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await asyncio.wait_for(sub.unsubscribe(), 2.0)
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass

    async def _ack(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.subject, None)
        if future is not None and not future.done():
            try:
                future.set_result(_decoder.decode(msg.data) if msg.data else _UNREADABLE)
            except msgspec.DecodeError:
                future.set_result(_UNREADABLE)

    async def publish_all(self, messages: Sequence[Message]) -> list[int]:
        """Publish ``messages`` in order without waiting in between; their stream sequences.

        All are settled before this returns; then the first failure is raised
        (``ConcurrencyConflict`` for a refused expected sequence, ``PublishFailed`` when the
        retrying path gives up).
        """
        await self.start()
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[PubAck]] = []
        replies: list[str] = []
        for subject, payload, headers in messages:
            reply = f"{self._prefix}.{next(self._tokens)}"
            replies.append(reply)
            future: asyncio.Future[PubAck] = loop.create_future()
            self._waiting[reply] = future
            futures.append(future)
            await self.bus.nc.publish(subject, payload, reply=reply, headers=headers)
        pending = [f for f in futures if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=self.ack_timeout_s)
        seqs: list[int] = []
        failure: BaseException | None = None
        for (subject, payload, headers), future in zip(messages, futures):
            ack = future.result() if future.done() else None
            if ack is None:
                future.cancel()
            if ack is not None and ack.error is None and ack.seq:
                seqs.append(ack.seq)
                continue
            if ack is not None and ack.error and ack.error.get("err_code") == _WRONG_LAST_SEQUENCE:
                failure = failure or ConcurrencyConflict(
                    headers.get(HDR_EXPECTED_SUBJECT, subject), int(headers.get(HDR_EXPECTED_SEQ, "0")),
                    str(ack.error.get("description", "")),
                )
                seqs.append(0)
                continue
            try:  # no ack, or another error (the stream is moving, ...): the retrying path
                seqs.append(await self.bus._publish(subject, payload, headers))
            except Exception as exc:  # noqa: BLE001 - raised after every message is settled
                failure = failure or exc
                seqs.append(0)
        for reply in replies:
            self._waiting.pop(reply, None)
        if failure is not None:
            raise failure
        return seqs
