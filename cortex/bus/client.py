"""The Bus: publishing events with dedupe and per-run optimistic concurrency, reading runs back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, ServiceUnavailableError
from nats.js.kv import KeyValue

from cortex.bus import subjects
from cortex.bus.acked import AckInbox, Batch
from cortex.bus.messages import (
    ERR_WRONG_LAST_SEQUENCE,
    HDR_EXPECTED_SEQ,
    HDR_EXPECTED_SUBJECT,
    Message,
    event_message,
    work_message,
)
from cortex.bus.connection import connect_nats
from cortex.bus.events import Event, decode
from cortex.bus.settings import BusSettings, StreamSettings
from cortex.bus.streams import provision
from cortex.bus.work import WorkItem
from cortex.errors import ConcurrencyConflict, PublishFailed

log = logging.getLogger("cortex.bus")

_RETRYABLE = (NatsTimeout, NoRespondersError, ServiceUnavailableError, asyncio.TimeoutError)


@dataclass(frozen=True)
class RunHistory:
    """A run's events in order, and the stream sequence of the last one (0 when empty)."""

    events: list[Event]
    last_seq: int


class Bus:
    """A NATS connection with JetStream, and Cortex's publishing and reading rules."""

    def __init__(self, nc: Client, url: str, settings: StreamSettings | None = None) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.url = url
        self.settings = settings or StreamSettings()
        self.publish_deadline_s = 30.0
        self.acks = AckInbox(nc)
        """The reply inbox of publishes sent without waiting (``Batch``)."""

    @classmethod
    async def connect(cls, url: str, *, name: str = "cortex", settings: StreamSettings | None = None) -> "Bus":
        """Connect to NATS at ``url`` (raises NatsUnavailable with a hint when nobody answers)."""
        nc = await connect_nats(url, name=name)
        return cls(nc, url, settings)

    @classmethod
    async def from_env(cls, *, name: str = "cortex") -> "Bus":
        """Connect to ``CORTEX_NATS_URL`` or to the running embedded server."""
        from cortex.bus.embedded import resolve_url

        settings = BusSettings.from_env()
        return await cls.connect(settings.url or resolve_url(), name=name, settings=settings.streams)

    async def provision(self) -> None:
        """Create or update streams and KV buckets (idempotent)."""
        await provision(self.js, self.settings)

    async def close(self) -> None:
        """Flush and close the connection."""
        if not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception:  # noqa: BLE001 - closing must not raise
                await self.nc.close()

    # ---- publishing ------------------------------------------------------------------

    async def publish_message(self, subject: str, payload: bytes, headers: dict[str, str]) -> int:
        """Publish and wait for the ack, retrying (same message id) through server restarts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_deadline_s
        delay = 0.05
        while True:
            try:
                ack = await self.js.publish(subject, payload, headers=headers, timeout=2.0)
                return ack.seq
            except APIError as exc:
                if exc.err_code == ERR_WRONG_LAST_SEQUENCE:
                    raise ConcurrencyConflict(
                        headers.get(HDR_EXPECTED_SUBJECT, subject),
                        int(headers.get(HDR_EXPECTED_SEQ, "0")),
                        exc.description or "",
                    ) from None
                if not isinstance(exc, ServiceUnavailableError) or loop.time() > deadline:
                    raise PublishFailed(f"publish to {subject} rejected: {exc.description or exc}") from None
            except _RETRYABLE as exc:
                if loop.time() > deadline:
                    raise PublishFailed(
                        f"publish to {subject} not acknowledged within {self.publish_deadline_s:.0f}s "
                        f"({type(exc).__name__}); is NATS at {self.url} up?"
                    ) from None
            log.debug("retrying publish to %s in %.2fs", subject, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def publish_event(self, event: Event, *, expected_last_seq: int | None = None) -> int:
        """Publish one event; with ``expected_last_seq`` the run must not have moved on since."""
        return await self.publish_message(*event_message(event, expected_last_seq))

    async def publish_events(self, events: Iterable[Event], *, expected_last_seq: int | None = None) -> int:
        """Publish events of one run in order, each checked against the one before; return the last seq."""
        seq = expected_last_seq
        for event in events:
            seq = await self.publish_event(event, expected_last_seq=seq)
        return seq or 0

    async def publish_batch(self, messages: Sequence[Message], *, ack_timeout_s: float = 5.0) -> list[int]:
        """Publish messages at once, in order, and await their acks together; their sequences.

        A message whose ack failed or did not come is published again through the retrying path
        with the same message id, so nothing is lost or stored twice; a refused expected-sequence
        check raises ``ConcurrencyConflict`` once all are settled (see ``acked.Batch``).
        """
        batch = Batch(self, ack_timeout_s=ack_timeout_s)
        for message in messages:
            await batch.send(*message)
        return [ack.seq for ack in await batch.confirm()]

    async def publish_pipelined(self, events: Sequence[Event], *, ack_timeout_s: float = 5.0) -> list[int]:
        """Publish many events without waiting for each ack in turn (no concurrency check)."""
        return await self.publish_batch([event_message(e) for e in events], ack_timeout_s=ack_timeout_s)

    async def publish_work(self, pool: str, item: WorkItem, *, lane: str | None = None) -> int:
        """Put a work item on ``cortex.work.<pool>[.<lane>]`` (deduplicated by its message id)."""
        return await self.publish_message(*work_message(pool, item, lane))

    # ---- reading ---------------------------------------------------------------------

    async def read_run(self, run_id: str) -> RunHistory:
        """Every event of a run in order, with the stream sequence of the last one."""
        events, last_seq = [], 0
        async for event, seq in self.read(subjects.run_events(run_id)):
            events.append(event)
            last_seq = seq
        return RunHistory(events, last_seq)

    async def read(
        self, filter_subject: str, *, stream: str = subjects.EVENTS_STREAM, start_seq: int | None = None
    ) -> AsyncIterator[tuple[Event, int]]:
        """Events stored on ``filter_subject`` up to now, in order (undecodable ones are skipped)."""
        config = ConsumerConfig(
            filter_subject=filter_subject,
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start_seq else DeliverPolicy.ALL,
            opt_start_seq=start_seq,
            inactive_threshold=30.0,
            mem_storage=True,
        )
        sub = await self.js.pull_subscribe(filter_subject, stream=stream, config=config)
        try:
            remaining = (await sub.consumer_info()).num_pending
            while remaining > 0:
                for msg in await sub.fetch(min(remaining, 512), timeout=5.0):
                    remaining = msg.metadata.num_pending
                    event = self.decode_or_none(msg)
                    if event is not None:
                        yield event, msg.metadata.sequence.stream
        finally:
            await _unsubscribe(sub)

    async def watch(
        self, filter_subject: str, *, stream: str = subjects.EVENTS_STREAM, from_start: bool = False,
        start_seq: int | None = None,
    ) -> AsyncIterator[tuple[Event, int]]:
        """Follow events on ``filter_subject`` live (optionally from the start) until cancelled."""
        if start_seq:
            policy = DeliverPolicy.BY_START_SEQUENCE
        else:
            policy = DeliverPolicy.ALL if from_start else DeliverPolicy.NEW
        sub = await self.js.subscribe(
            filter_subject, stream=stream, ordered_consumer=True, deliver_policy=policy,
            config=ConsumerConfig(opt_start_seq=start_seq) if start_seq else None,
        )
        try:
            async for msg in sub.messages:
                event = self.decode_or_none(msg)
                if event is not None:
                    yield event, msg.metadata.sequence.stream
        finally:
            await _unsubscribe(sub)

    def decode_or_none(self, msg: Msg) -> Event | None:
        """Decode a stored event; log and return None for a malformed one (it is not lost: it stays in the stream)."""
        try:
            return decode(msg.data, msg.subject, msg.metadata.sequence.stream)
        except Exception as exc:  # noqa: BLE001 - one bad message must not stop a reader
            log.warning("%s", exc)
            return None

    async def kv(self, bucket: str) -> KeyValue:
        """A KV bucket by name (see cortex.bus.subjects.KV_*)."""
        return await self.js.key_value(bucket)


async def _unsubscribe(sub: object) -> None:
    """Unsubscribe within a bounded time, even while being cancelled (a reader must never hang)."""
    try:
        await asyncio.wait_for(sub.unsubscribe(), 2.0)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - the server drops an abandoned ephemeral consumer by itself
        log.debug("unsubscribe did not finish cleanly", exc_info=True)
