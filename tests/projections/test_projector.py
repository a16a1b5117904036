"""The projector against a real nats-server: models built from published events, rebuilt from zero, live."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cortex.bus import events as ev
from cortex.bus.client import Bus
from cortex.bus.subjects import EVENTS_STREAM, KV_RUNS
from cortex.errors import ConfigError
from cortex.manifests.apply import apply_manifests
from cortex.projections.projector import EVENTS_DURABLE, Projector
from cortex.projections.queries import ProjectionQueries
from cortex.projections.runs import RunView
from cortex.projections.store import plain
from tests.projections.events import T0, Log, chatty_run, fold_all, golden_events, plugin_event


def without_seq(value: Any) -> Any:
    """A view as plain data without the stream sequences (they differ between a test fold and the stream)."""
    if isinstance(value, dict):
        return {k: without_seq(v) for k, v in value.items() if k != "seq"}
    if isinstance(value, list):
        return [without_seq(v) for v in value]
    return value


async def snapshot(queries: ProjectionQueries) -> dict[str, Any]:
    runs = await queries.list_runs(limit=1000)
    return {
        "runs": runs,
        "progressions": {r["run_id"]: await queries.get_progression(r["run_id"]) for r in runs},
        "agents": await queries.list_agents(),
        "plugins": await queries.list_plugins(now=T0 + timedelta(minutes=1)),
    }


@pytest.fixture
async def populated(bus: Bus, tmp_path: Path) -> Bus:
    """A bus with an applied agent, the golden run, a chatty run and plugin events published."""
    (tmp_path / "writer.yaml").write_text("kind: agent\nname: writer\nprovider: scripted\nplugins: [text]\n")
    await apply_manifests(bus, tmp_path)
    await bus.publish_pipelined(golden_events())
    await bus.publish_pipelined(chatty_run("r-chat"))
    for i, kind in enumerate(("registered", "heartbeat", "heartbeat")):
        await bus.publish_event(plugin_event(kind, "notes", "w1", T0 + timedelta(seconds=10 * i)))
    await bus.publish_event(plugin_event("registered", "notes", "w2", T0))
    await bus.publish_event(plugin_event("unregistered", "notes", "w2", T0 + timedelta(seconds=5)))
    return bus


async def test_the_projector_builds_every_model_from_the_log(populated: Bus) -> None:
    bus = populated
    folded = await Projector(bus).catch_up()
    assert folded >= len(golden_events()) + len(chatty_run()) + 5
    queries = ProjectionQueries(bus)

    for run_id, events in (("golden", golden_events()), ("r-chat", chatty_run("r-chat"))):
        run, progression = fold_all(events)
        assert without_seq(await queries.get_run(run_id)) == without_seq(plain(run))
        assert without_seq(await queries.get_progression(run_id)) == without_seq(plain(progression))

    agents = {a["name"]: a for a in await queries.list_agents()}
    assert agents["writer"]["defined"] and agents["writer"]["tools"] == ["text.extract", "text.count"]
    assert (agents["writer"]["total_runs"], agents["writer"]["active"], agents["writer"]["last_run_id"]) == (1, 0, "r-chat")
    assert (agents["researcher"]["defined"], agents["researcher"]["total_runs"]) == (False, 1)

    [notes] = await queries.list_plugins(now=T0 + timedelta(seconds=30))
    assert (notes["name"], notes["status"], notes["live_workers"]) == ("notes", "live", 1)
    assert {w: v["status"] for w, v in notes["workers"].items()} == {"w1": "live", "w2": "stopped"}
    [later] = await queries.list_plugins(now=T0 + timedelta(hours=1))
    assert later["workers"]["w1"]["status"] == "stale"

    assert await queries.get_run("nothing") is None and await queries.get_progression("nothing") is None


async def test_run_listing_filters_and_orders(populated: Bus) -> None:
    log = Log("r-new", agent="writer")
    log.requested()
    newer = msgspec.structs.replace(log.events[0], time=T0 + timedelta(days=1))
    await populated.publish_pipelined([newer])
    await Projector(populated).catch_up()
    queries = ProjectionQueries(populated)
    assert [r["run_id"] for r in await queries.list_runs()] == ["r-new", "r-chat", "golden"]
    assert [r["run_id"] for r in await queries.list_runs(limit=1)] == ["r-new"]
    assert [r["run_id"] for r in await queries.list_runs(agent="writer")] == ["r-new", "r-chat"]
    assert [r["run_id"] for r in await queries.list_runs(status="requested")] == ["r-new"]
    assert all("response" not in r for r in await queries.list_runs())
    with pytest.raises(ConfigError, match="unknown status"):
        await queries.list_runs(status="sleeping")
    with pytest.raises(ConfigError, match="limit"):
        await queries.list_runs(limit=0)
    with pytest.raises(ConfigError, match="invalid run id"):
        await queries.get_run("a.b")


async def test_a_rebuild_from_zero_gives_the_same_models(populated: Bus) -> None:
    bus = populated
    await Projector(bus).catch_up()
    queries = ProjectionQueries(bus)
    before = await snapshot(queries)
    # damage a model, as a bug or a hand edit would
    kv = await bus.kv(KV_RUNS)
    await kv.put("golden", msgspec.json.encode(RunView(run_id="golden", status="failed", seq=10**9)))
    assert (await queries.get_run("golden"))["status"] == "failed"

    folded = await Projector(bus).rebuild()
    assert folded >= len(golden_events())
    assert await snapshot(queries) == before


async def test_redelivered_messages_change_nothing(populated: Bus) -> None:
    bus = populated
    await Projector(bus).catch_up()
    queries = ProjectionQueries(bus)
    before = await snapshot(queries)
    await bus.js.delete_consumer(EVENTS_STREAM, EVENTS_DURABLE)  # the log is delivered again from the start
    assert await Projector(bus).catch_up() >= len(golden_events())
    assert await snapshot(queries) == before


async def test_the_running_projector_follows_new_events(bus: Bus, run_id: str) -> None:
    projector = Projector(bus)
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    queries = ProjectionQueries(bus)
    try:
        log = Log(run_id)
        log.requested()
        await bus.publish_pipelined(log.events)
        await until(lambda: _status(queries, run_id, "requested"))
        log.add(ev.RunStarted, ev.RunStartedData, agent="writer")
        log.add(ev.RunCompleted, ev.RunCompletedData, response="done", usage=ev.Usage(3, 4))
        await bus.publish_pipelined(log.events[1:])
        await until(lambda: _status(queries, run_id, "completed"))
        assert (await queries.get_run(run_id))["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        await bus.publish_event(plugin_event("registered", "notes", "w9", T0))
        await until(lambda: _has_plugin(queries, "notes"))
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert await projector.pending() == 0


async def _status(queries: ProjectionQueries, run_id: str, status: str) -> bool:
    run = await queries.get_run(run_id)
    return run is not None and run["status"] == status


async def _has_plugin(queries: ProjectionQueries, name: str) -> bool:
    return any(p["name"] == name for p in await queries.list_plugins())


async def until(condition, timeout_s: float = 10.0) -> None:
    """Poll an async condition until it holds, failing after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_progression_too_big_for_one_message_is_stored_compacted(bus: Bus) -> None:
    from cortex.projections.progressions import ProgressionView, TextStep
    from cortex.projections.store import ViewStore

    big = ProgressionView(run_id="big", steps=tuple(
        TextStep(turn_id=f"t{i}", channel="response", text="x" * 60_000) for i in range(30)
    ))
    assert len(msgspec.json.encode(big)) > bus.nc.max_payload
    store = ViewStore(bus)
    assert await store.put("cortex_progressions", "big", big) > 0
    stored = await store.get("cortex_progressions", "big")
    assert len(stored.steps) == 30 and all(len(s.text) == 1000 and s.text.endswith("…") for s in stored.steps)
