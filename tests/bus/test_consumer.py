"""Durable consumers: explicit ack, bad messages recorded on the dead-letter stream and skipped."""

from __future__ import annotations

import asyncio

import pytest

from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.consumer import HDR_ERROR, HDR_ORIGIN_SEQ, HDR_ORIGIN_SUBJECT, DurableConsumer
from cortex.bus.events import Event, decode
from cortex.errors import MalformedEvent
from tests.bus.helpers import ping


async def wait_until(predicate, timeout_s: float = 10.0) -> None:
    """Poll ``predicate`` until true or fail after the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def test_malformed_payload_names_subject_and_sequence() -> None:
    with pytest.raises(MalformedEvent) as info:
        decode(b"{not json", "cortex.evt.r1.x", 42)
    assert "cortex.evt.r1.x" in str(info.value) and "42" in str(info.value)
    with pytest.raises(MalformedEvent, match="not a known event"):
        decode(b'{"type": "no.such.event", "id": "x"}', "cortex.evt.r1.y", 7)


async def start(consumer: DurableConsumer) -> asyncio.Task:
    task = asyncio.create_task(consumer.run())
    return task


async def test_consumer_skips_bad_messages_and_records_them(bus: Bus, run_id: str) -> None:
    handled: list[Event] = []

    async def handler(event: Event, msg) -> None:
        handled.append(event)

    consumer = DurableConsumer(
        bus, stream=subjects.EVENTS_STREAM, durable="t-bad", filter_subjects=[subjects.run_events(run_id)],
        decoder=decode, handler=handler,
    )
    await bus.publish_event(ping(run_id, 1))
    await bus.js.publish(subjects.run_event(run_id, "bus.ping"), b"garbage{")
    await bus.js.publish(subjects.run_event(run_id, "bus.ping"), b'{"type":"who.knows","id":"z"}')
    await bus.publish_event(ping(run_id, 2))
    task = await start(consumer)
    try:
        await wait_until(lambda: len(handled) == 2 and consumer.dead_lettered == 2)
    finally:
        consumer.stop()
        await task
    assert [e.data.seq for e in handled] == [1, 2]
    dlq = await bus.js.stream_info(subjects.DEAD_LETTER_STREAM)
    assert dlq.state.messages == 2
    first = await bus.js.get_msg(subjects.DEAD_LETTER_STREAM, dlq.state.first_seq)
    assert first.data == b"garbage{"
    assert first.headers[HDR_ORIGIN_SUBJECT] == subjects.run_event(run_id, "bus.ping")
    assert first.headers[HDR_ORIGIN_SEQ] == "2"
    assert "not valid JSON" in first.headers[HDR_ERROR]
    info = await bus.js.consumer_info(subjects.EVENTS_STREAM, "t-bad")
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_failing_handler_is_retried_then_dead_lettered(bus: Bus, run_id: str) -> None:
    attempts: dict[int, int] = {}

    async def handler(event: Event, msg) -> None:
        attempts[event.data.seq] = attempts.get(event.data.seq, 0) + 1
        if event.data.seq == 1 or attempts[event.data.seq] < 2:
            raise RuntimeError("boom")

    consumer = DurableConsumer(
        bus, stream=subjects.EVENTS_STREAM, durable="t-fail", filter_subjects=[subjects.run_events(run_id)],
        decoder=decode, handler=handler, max_deliver=3,
    )
    await bus.publish_event(ping(run_id, 1))
    await bus.publish_event(ping(run_id, 2))
    task = await start(consumer)
    try:
        await wait_until(lambda: consumer.dead_lettered == 1 and attempts.get(2) == 2)
    finally:
        consumer.stop()
        await task
    assert attempts[1] == 3
    dlq = await bus.js.stream_info(subjects.DEAD_LETTER_STREAM)
    last = await bus.js.get_msg(subjects.DEAD_LETTER_STREAM, dlq.state.last_seq)
    assert "boom" in last.headers[HDR_ERROR]


async def test_durable_consumer_resumes_where_it_stopped(bus: Bus, run_id: str) -> None:
    handled: list[int] = []

    async def handler(event: Event, msg) -> None:
        handled.append(event.data.seq)

    def make() -> DurableConsumer:
        return DurableConsumer(
            bus, stream=subjects.EVENTS_STREAM, durable="t-resume",
            filter_subjects=[subjects.run_events(run_id)], decoder=decode, handler=handler,
        )

    for n in range(3):
        await bus.publish_event(ping(run_id, n))
    first = make()
    task = await start(first)
    await wait_until(lambda: len(handled) == 3)
    first.stop()
    await task
    for n in range(3, 5):
        await bus.publish_event(ping(run_id, n))
    second = make()
    task = await start(second)
    await wait_until(lambda: len(handled) == 5)
    second.stop()
    await task
    assert handled == [0, 1, 2, 3, 4]
