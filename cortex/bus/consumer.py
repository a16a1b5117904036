"""Durable pull consumers with explicit ack; bad messages go to the dead-letter stream, never lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import FetchTimeoutError, NotFoundError

from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.errors import MalformedEvent

log = logging.getLogger("cortex.bus")

T = TypeVar("T")
Handler = Callable[[T, Msg], Awaitable[None]]
Decoder = Callable[[bytes, str, int | None], T]

HDR_ORIGIN_SUBJECT = "Cortex-Origin-Subject"
HDR_ORIGIN_STREAM = "Cortex-Origin-Stream"
HDR_ORIGIN_SEQ = "Cortex-Origin-Sequence"
HDR_ERROR = "Cortex-Error"


async def dead_letter(bus: Bus, stream: str, msg: Msg, reason: str) -> None:
    """Record a message that cannot be processed, with where it came from and why."""
    seq = msg.metadata.sequence.stream if msg.reply else None
    headers = {
        HDR_ORIGIN_SUBJECT: msg.subject,
        HDR_ORIGIN_STREAM: stream,
        HDR_ORIGIN_SEQ: str(seq or ""),
        HDR_ERROR: reason[:1000].replace("\n", " "),
        "Nats-Msg-Id": f"dlq:{stream}:{seq}",
    }
    await bus.publish_message(subjects.dead_letter(stream), msg.data, headers)


class DurableConsumer(Generic[T]):
    """A durable pull consumer that decodes, hands each message to a handler and acks it.

    A message that does not decode is recorded on ``cortex.dlq.<stream>`` and terminated;
    a handler that raises gets the message redelivered with a delay, and after ``max_deliver``
    attempts it is dead-lettered too. The loop never dies of one message.
    """

    def __init__(
        self,
        bus: Bus,
        *,
        stream: str,
        durable: str,
        filter_subjects: Sequence[str],
        decoder: Decoder[T],
        handler: Handler[T],
        max_deliver: int = 5,
        ack_wait_s: float = 30.0,
        batch: int = 64,
        deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
        max_ack_pending: int = 1000,
        concurrency: int = 1,
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.durable = durable
        self.filter_subjects = list(filter_subjects)
        self.decoder = decoder
        self.handler = handler
        self.max_deliver = max_deliver
        self.ack_wait_s = ack_wait_s
        self.batch = batch
        self.deliver_policy = deliver_policy
        self.max_ack_pending = max_ack_pending
        self.concurrency = max(1, concurrency)
        self.dead_lettered = 0
        self._stopping = asyncio.Event()

    def config(self) -> ConsumerConfig:
        """The consumer's JetStream configuration."""
        return ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_deliver=self.max_deliver,
            deliver_policy=self.deliver_policy,
            max_ack_pending=self.max_ack_pending,
            filter_subjects=self.filter_subjects if len(self.filter_subjects) > 1 else None,
            filter_subject=self.filter_subjects[0] if len(self.filter_subjects) == 1 else None,
        )

    async def ensure(self) -> None:
        """Create the durable consumer if it does not exist yet."""
        try:
            await self.bus.js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            await self.bus.js.add_consumer(self.stream, self.config())

    def stop(self) -> None:
        """Ask the loop to finish after the current batch."""
        self._stopping.set()

    async def run(self) -> None:
        """Pull, decode, handle and ack until stopped; up to ``concurrency`` messages at once."""
        await self.ensure()
        sub = await self.bus.js.pull_subscribe_bind(self.durable, self.stream)
        running: set[asyncio.Task[None]] = set()
        pending = 0
        try:
            while not self._stopping.is_set():
                free = self.concurrency - len(running)
                if free <= 0:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                # Ask for one message while idle and for what is known to be pending otherwise:
                # nats-py holds a larger fetch open until it is full or times out, so a lone
                # message would wait for the whole timeout.
                want = max(1, min(self.batch, free, pending))
                try:
                    msgs = await sub.fetch(want, timeout=1.0 if want == 1 else 0.05)
                except (FetchTimeoutError, NatsTimeout, asyncio.TimeoutError):
                    pending = 0
                    continue
                except ConnectionClosedError:
                    return
                pending = msgs[-1].metadata.num_pending if msgs else 0
                for msg in msgs:
                    if self.concurrency == 1:
                        await self.process(msg)
                    else:
                        task = asyncio.create_task(self.process(msg))
                        running.add(task)
                        task.add_done_callback(running.discard)
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        finally:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass

    async def process(self, msg: Msg) -> None:
        """Handle one message: decode, call the handler, ack (or nak / dead-letter)."""
        meta = msg.metadata
        try:
            item = self.decoder(msg.data, msg.subject, meta.sequence.stream)
        except MalformedEvent as exc:
            log.warning("%s; recorded on %s", exc, subjects.dead_letter(self.stream))
            await self._dead_letter(msg, str(exc))
            return
        try:
            await self.handler(item, msg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a handler failure must not kill the loop
            reason = f"handler failed on {msg.subject} (stream sequence {meta.sequence.stream}): {exc!r}"
            if meta.num_delivered >= self.max_deliver:
                log.error("%s; giving up after %d deliveries", reason, meta.num_delivered)
                await self._dead_letter(msg, reason)
            else:
                log.warning("%s; will retry", reason)
                await msg.nak(delay=min(0.2 * 2 ** meta.num_delivered, 5.0))
            return
        if not msg._ackd:
            await msg.ack()

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        self.dead_lettered += 1
        await dead_letter(self.bus, self.stream, msg, reason)
        await msg.term()
