"""The relic pool against a real nats-server and a real HTTP service (examples/relics/notes)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cortex.bus.client import Bus
from cortex.bus.embedded import free_port
from cortex.bus.events import Event, RelicData, RelicStarted, RunCompleted, RunCompletedData
from cortex.bus.work import ActionWork
from cortex.manifests.relic import HealthSpec, RelicSpec, RestartSpec, load_relic_manifest, resolve_relic
from cortex.manifests.store import ManifestStore
from cortex.workers.relic_pool import RelicPool
from tests.support.nats import NatsProcess
from tests.workers.test_agent_pool import NOW, events_of, schedule, wait_for_event

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "relics" / "notes" / "relic.yaml"
FAST_HEALTH = HealthSpec(path="/health", interval_s=0.2, timeout_s=0.3, start_timeout_s=15, failures=2)


async def put_relic(bus: Bus, **changes: Any) -> RelicSpec:
    """Apply the example relic with some fields changed (fast health checks by default)."""
    spec = resolve_relic(load_relic_manifest(EXAMPLE))
    changes.setdefault("health", FAST_HEALTH)
    changes.setdefault("restart", RestartSpec(max_restarts=2, backoff_s=0.1))
    changes.setdefault("stop_timeout_s", 1.0)
    spec = msgspec.structs.replace(spec, **changes)
    await ManifestStore(bus).put("relic", spec.name, spec)
    return spec


@pytest.fixture
async def relic_pool(bus: Bus) -> AsyncIterator[RelicPool]:
    """A running relic pool with the example ``notes`` relic applied."""
    await put_relic(bus)
    pool, stop = RelicPool(bus), asyncio.Event()
    task = asyncio.create_task(pool.serve(stop, concurrency=8))
    try:
        yield pool
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


class Relic:
    """Drives the relic ``notes`` of one run the way the kernel would, one action at a time."""

    def __init__(self, bus: Bus, run_id: str) -> None:
        self.bus, self.run_id, self.n = bus, run_id, 0

    async def op(self, params: Any, name: str = "notes") -> Event:
        """Schedule one relic action and return its outcome (``action.completed`` or ``action.failed``)."""
        self.n += 1
        action = f"a{self.n}"
        await schedule(self.bus, self.run_id, action, "relic", name, params, "relic")

        async def outcome() -> Event:
            async for event, _ in self.bus.watch(f"cortex.evt.{self.run_id}.action.>", from_start=True):
                if event.type in ("action.completed", "action.failed") and event.data.action_id == action:
                    return event
            raise AssertionError

        return await asyncio.wait_for(outcome(), 20)

    async def lifecycle(self, event_type: str, index: int = 0, timeout_s: float = 20.0) -> RelicData:
        """The ``index``-th relic event of a type on the run (waiting for it)."""
        async def nth() -> RelicData:
            seen = 0
            async for event, _ in self.bus.watch(f"cortex.evt.{self.run_id}.{event_type}", from_start=True):
                if seen == index:
                    return event.data
                seen += 1
            raise AssertionError

        try:
            return await asyncio.wait_for(nth(), timeout_s)
        except TimeoutError:
            raise AssertionError(f"no {event_type} #{index} on {self.run_id} in {timeout_s}s") from None


async def gone(pid: int, timeout_s: float = 10.0) -> bool:
    """Whether the process disappears within the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_start_call_and_stop(bus: Bus, relic_pool: RelicPool, run_id: str) -> None:
    relic = Relic(bus, run_id)
    started = await relic.op({"op": "start"})
    assert started.type == "action.completed"
    assert started.data.result["status"] == "started"
    assert started.data.result["endpoints"]["add"] == "POST /notes"
    up = await relic.lifecycle("relic.started")
    assert up.url == started.data.result["url"] and up.worker == relic_pool.worker and up.pid
    assert (await relic.op({"op": "start"})).data.result["status"] == "running"

    added = await relic.op({"op": "call", "endpoint": "add", "body": {"text": "buy milk"}})
    assert added.data.result == {"status": 201, "body": {"id": 1, "count": 1}}
    listed = await relic.op({"op": "call", "endpoint": "list"})
    assert listed.data.result["body"] == {"notes": ["buy milk"]}
    info = await relic.op({"op": "call", "endpoint": "info"})
    assert info.data.result["body"]["pid"] == up.pid

    stopped = await relic.op({"op": "stop"})
    assert stopped.data.result["stopped"] is True
    down = await relic.lifecycle("relic.stopped")
    assert down.reason == "stop_requested" and down.instance == up.instance
    assert await gone(up.pid)
    again = await relic.op({"op": "stop"})
    assert again.data.result == {"relic": "notes", "stopped": False, "detail": "not running"}


@pytest.mark.parametrize(
    ("name", "params", "code"),
    [
        ("notes", {"op": "call", "endpoint": "list"}, "relic_not_running"),
        ("notes", {"op": "call", "endpoint": "nope"}, "unknown_endpoint"),
        ("notes", {"op": "dance"}, "invalid_params"),
        ("ghost", {"op": "start"}, "unknown_relic"),
    ],
)
async def test_bad_operations_fail_clearly(
    bus: Bus, relic_pool: RelicPool, run_id: str, name: str, params: Any, code: str
) -> None:
    failed = await Relic(bus, run_id).op(params, name)
    assert failed.type == "action.failed" and failed.data.code == code


async def test_an_http_error_of_the_service_fails_the_call(bus: Bus, relic_pool: RelicPool, run_id: str) -> None:
    relic = Relic(bus, run_id)
    await relic.op({"op": "start"})
    failed = await relic.op({"op": "call", "endpoint": "add", "body": {"no_text": 1}})
    assert failed.data.code == "relic_http_error" and "400" in failed.data.error and not failed.data.retryable


async def test_a_crashed_relic_is_restarted(bus: Bus, relic_pool: RelicPool, run_id: str) -> None:
    relic = Relic(bus, run_id)
    await relic.op({"op": "start"})
    await relic.op({"op": "call", "endpoint": "add", "body": {"text": "lost on crash"}})
    first = await relic.lifecycle("relic.started")
    os.killpg(first.pid, signal.SIGKILL)
    crashed = await relic.lifecycle("relic.unhealthy")
    assert crashed.reason == "crashed" and "exit code -9" in crashed.detail
    restarted = await relic.lifecycle("relic.restarted")
    assert restarted.restarts == 1 and restarted.pid != first.pid and restarted.url == first.url
    listed = await relic.op({"op": "call", "endpoint": "list"})
    assert listed.data.result["body"] == {"notes": []}


async def test_a_relic_that_stops_answering_is_restarted(bus: Bus, relic_pool: RelicPool, run_id: str) -> None:
    relic = Relic(bus, run_id)
    await relic.op({"op": "start"})
    first = await relic.lifecycle("relic.started")
    os.killpg(first.pid, signal.SIGSTOP)  # alive but frozen: only the health check can tell
    unhealthy = await relic.lifecycle("relic.unhealthy")
    assert unhealthy.reason == "unhealthy" and "2 health checks failed" in unhealthy.detail
    restarted = await relic.lifecycle("relic.restarted")
    assert restarted.pid != first.pid
    assert await gone(first.pid)


async def test_a_relic_that_keeps_crashing_is_given_up(bus: Bus, relic_pool: RelicPool, run_id: str) -> None:
    await put_relic(bus, restart=RestartSpec(max_restarts=1, backoff_s=0.05))
    relic = Relic(bus, run_id)
    await relic.op({"op": "start"})
    os.killpg((await relic.lifecycle("relic.started")).pid, signal.SIGKILL)
    os.killpg((await relic.lifecycle("relic.restarted")).pid, signal.SIGKILL)
    stopped = await relic.lifecycle("relic.stopped")
    assert stopped.reason == "crashed" and "gave up after 1 restarts" in stopped.detail
    assert len(await events_of(bus, run_id, "relic.unhealthy")) == 2
    failed = await relic.op({"op": "call", "endpoint": "list"})
    assert failed.data.code == "relic_not_running"


async def test_a_relic_that_never_gets_healthy_fails_its_start(
    bus: Bus, relic_pool: RelicPool, run_id: str
) -> None:
    await put_relic(bus, command=("{python}", "-c", "print('bad config'); raise SystemExit(3)"))
    failed = await Relic(bus, run_id).op({"op": "start"})
    assert failed.data.code == "relic_start_failed"
    assert "exited with code 3" in failed.data.error and "bad config" in failed.data.error
    stopped = await Relic(bus, run_id).lifecycle("relic.stopped")
    assert stopped.reason == "start_failed"


async def test_the_ttl_stops_the_relic(bus: Bus, relic_pool: RelicPool, run_id: str) -> None:
    await put_relic(bus, ttl_s=0.5)
    relic = Relic(bus, run_id)
    await relic.op({"op": "start"})
    up = await relic.lifecycle("relic.started")
    stopped = await relic.lifecycle("relic.stopped")
    assert stopped.reason == "ttl_expired"
    assert await gone(up.pid)


async def test_the_end_of_the_run_stops_its_relics_only(bus: Bus, relic_pool: RelicPool, run_id: str) -> None:
    relic, other = Relic(bus, run_id), Relic(bus, run_id + "x")
    await relic.op({"op": "start"})
    await other.op({"op": "start"})
    up, other_up = await relic.lifecycle("relic.started"), await other.lifecycle("relic.started")
    await bus.publish_event(RunCompleted(id=f"{run_id}:done", run_id=run_id, time=NOW,
                                         data=RunCompletedData(response="bye")))
    assert (await relic.lifecycle("relic.stopped")).reason == "run_ended"
    assert await gone(up.pid)
    assert (await other.op({"op": "call", "endpoint": "list"})).data.result["status"] == 200
    assert other_up.pid is not None and await events_of(bus, run_id + "x", "relic.stopped") == []


async def test_a_stopping_worker_stops_its_relics(bus: Bus, run_id: str) -> None:
    await put_relic(bus)
    pool, stop = RelicPool(bus), asyncio.Event()
    task = asyncio.create_task(pool.serve(stop))
    relic = Relic(bus, run_id)
    await relic.op({"op": "start"})
    up = await relic.lifecycle("relic.started")
    stop.set()
    await asyncio.wait_for(task, 20)
    assert (await relic.lifecycle("relic.stopped")).reason == "worker_stopped"
    assert await gone(up.pid)


async def test_another_worker_calls_and_stops_a_relic_it_does_not_own(
    bus: Bus, relic_pool: RelicPool, run_id: str
) -> None:
    spec = await put_relic(bus)
    relic = Relic(bus, run_id)
    await relic.op({"op": "start"})
    up = await relic.lifecycle("relic.started")
    other = RelicPool(bus)
    item = ActionWork(run_id=run_id, causation_id=f"{run_id}:other", action_id="o1", type="relic",
                      name="notes", params={})
    called = await other.call(item, spec, {"endpoint": "add", "body": {"text": "from afar"}})
    assert called["body"]["count"] == 1
    result = await other.stop(item, spec)
    assert result == {"relic": "notes", "instance": up.instance, "stopped": True}
    stopped = await relic.lifecycle("relic.stopped")
    assert stopped.reason == "stop_requested" and other.worker in stopped.detail
    asked = await wait_for_event(bus, run_id, "relic.stop_requested")
    assert asked.data.worker == other.worker
    assert await gone(up.pid)


async def test_a_relic_whose_worker_is_gone_is_started_again(
    bus: Bus, relic_pool: RelicPool, run_id: str
) -> None:
    dead = RelicData(relic="notes", instance="old", worker="gone-worker", pid=1,
                     url=f"http://127.0.0.1:{free_port()}")
    await bus.publish_event(RelicStarted(id=f"{run_id}:old", run_id=run_id, time=NOW, data=dead))
    relic = Relic(bus, run_id)
    started = await relic.op({"op": "start"})
    assert started.data.result["status"] == "started" and started.data.result["instance"] != "old"
    lost = await relic.lifecycle("relic.stopped")
    assert (lost.instance, lost.reason) == ("old", "lost")


async def test_killing_the_worker_process_leaves_no_relic_behind(
    bus: Bus, nats_server: NatsProcess, run_id: str
) -> None:
    await put_relic(bus)
    env = {**os.environ, "CORTEX_NATS_URL": nats_server.url}
    worker = subprocess.Popen([sys.executable, "-m", "cortex.cli.main", "worker", "relic"], env=env)
    pid = None
    try:
        relic = Relic(bus, run_id)
        assert (await relic.op({"op": "start"})).type == "action.completed"
        pid = (await relic.lifecycle("relic.started")).pid
        worker.kill()
        worker.wait(10)
        assert await gone(pid)
    finally:
        worker.kill()
        worker.wait(10)
        if pid is not None:  # do not leak the service when the assertion failed
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
