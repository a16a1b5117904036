"""Publishing: dedupe by message id, per-run optimistic concurrency, reading a run back in order."""

from __future__ import annotations

import asyncio

import pytest
from nats.js.api import RetentionPolicy

from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.events import Ping
from cortex.errors import ConcurrencyConflict
from tests.bus.helpers import ping


async def test_run_history_comes_back_in_order(bus: Bus, run_id: str) -> None:
    for n in range(20):
        await bus.publish_event(ping(run_id, n))
    history = await bus.read_run(run_id)
    assert [e.data.seq for e in history.events] == list(range(20))
    assert all(isinstance(e, Ping) for e in history.events)
    info = await bus.js.stream_info(subjects.EVENTS_STREAM)
    assert history.last_seq == info.state.last_seq


async def test_empty_run_has_no_history(bus: Bus, run_id: str) -> None:
    history = await bus.read_run(run_id)
    assert history.events == [] and history.last_seq == 0


async def test_repeated_publish_is_deduplicated(bus: Bus, run_id: str) -> None:
    first = await bus.publish_event(ping(run_id, 1))
    again = await bus.publish_event(ping(run_id, 1))
    assert again == first
    assert len((await bus.read_run(run_id)).events) == 1


async def test_events_land_on_run_subjects(bus: Bus, run_id: str) -> None:
    await bus.publish_event(ping(run_id, 1))
    msg = await bus.js.get_last_msg(subjects.EVENTS_STREAM, subjects.run_event(run_id, "bus.ping"))
    assert msg.headers["Cortex-Type"] == "bus.ping"
    assert msg.headers["Nats-Msg-Id"] == f"{run_id}:1"
    assert b'"type":"bus.ping"' in msg.data


async def test_expected_sequence_accepts_the_current_last(bus: Bus, run_id: str) -> None:
    seq = await bus.publish_event(ping(run_id, 0), expected_last_seq=0)
    seq2 = await bus.publish_event(ping(run_id, 1), expected_last_seq=seq)
    assert seq2 > seq


async def test_stale_expected_sequence_is_a_typed_conflict(bus: Bus, run_id: str) -> None:
    await bus.publish_event(ping(run_id, 0), expected_last_seq=0)
    with pytest.raises(ConcurrencyConflict) as info:
        await bus.publish_event(ping(run_id, 1), expected_last_seq=0)
    assert info.value.subject == subjects.run_events(run_id)
    assert len((await bus.read_run(run_id)).events) == 1


async def test_other_runs_do_not_conflict(bus: Bus, run_id: str) -> None:
    seq = await bus.publish_event(ping(run_id, 0), expected_last_seq=0)
    await bus.publish_event(ping(run_id + "x", 0), expected_last_seq=0)
    await bus.publish_event(ping(run_id, 1), expected_last_seq=seq)


async def test_two_writers_racing_on_one_run_only_one_wins(bus: Bus, run_id: str) -> None:
    base = await bus.publish_event(ping(run_id, 0), expected_last_seq=0)
    results = await asyncio.gather(
        bus.publish_event(ping(run_id, 1, "a"), expected_last_seq=base),
        bus.publish_event(ping(run_id, 2, "b"), expected_last_seq=base),
        return_exceptions=True,
    )
    assert sum(isinstance(r, ConcurrencyConflict) for r in results) == 1
    assert len((await bus.read_run(run_id)).events) == 2


async def test_publish_events_chains_the_expected_sequence(bus: Bus, run_id: str) -> None:
    last = await bus.publish_events([ping(run_id, n) for n in range(5)], expected_last_seq=0)
    history = await bus.read_run(run_id)
    assert history.last_seq == last and len(history.events) == 5


async def test_watch_sees_live_events(bus: Bus, run_id: str) -> None:
    seen: list[int] = []

    async def follow() -> None:
        async for event, _ in bus.watch(subjects.run_events(run_id), from_start=True):
            seen.append(event.data.seq)
            if len(seen) == 3:
                return

    task = asyncio.create_task(follow())
    for n in range(3):
        await bus.publish_event(ping(run_id, n))
    await asyncio.wait_for(task, 5)
    assert seen == [0, 1, 2]


async def test_provision_is_idempotent_and_configurable(nats_server, monkeypatch) -> None:
    monkeypatch.setenv("CORTEX_DUPLICATE_WINDOW", "30")
    monkeypatch.setenv("CORTEX_EVENTS_MAX_AGE", "3600")
    from cortex.bus.settings import StreamSettings

    client = await Bus.connect(nats_server.url, settings=StreamSettings.from_env())
    try:
        await client.provision()
        await client.provision()
        info = await client.js.stream_info(subjects.EVENTS_STREAM)
        assert info.config.duplicate_window == 30
        assert info.config.max_age == 3600
        work = await client.js.stream_info(subjects.WORK_STREAM)
        assert RetentionPolicy(work.config.retention) is RetentionPolicy.WORK_QUEUE
        for bucket in subjects.KV_BUCKETS:
            await client.kv(bucket)
    finally:
        await client.close()


async def test_pipelined_publish_stores_each_event_once(bus: Bus, run_id: str) -> None:
    events = [ping(run_id, n) for n in range(300)]
    seqs = await bus.publish_pipelined(events)
    assert len(set(seqs)) == 300
    again = await bus.publish_pipelined(events[:10])
    assert again == seqs[:10]
    history = await bus.read_run(run_id)
    assert [e.data.seq for e in history.events] == list(range(300))
