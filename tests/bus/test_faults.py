"""Faults: a server restart, a killed cluster node, an unreachable server."""

from __future__ import annotations

import asyncio

import pytest

from cortex.bus.client import Bus
from cortex.bus.settings import StreamSettings
from cortex.errors import NatsUnavailable
from tests.bus.helpers import ping
from tests.support.nats import NatsProcess, free_port


async def test_unreachable_server_is_one_clear_error() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(NatsUnavailable) as info:
        await Bus.connect(url)
    assert url in str(info.value) and "cortex up" in str(info.value)


async def test_publishes_survive_a_server_restart(nats_server: NatsProcess, run_id: str) -> None:
    bus = await Bus.connect(nats_server.url)
    try:
        await bus.provision()
        for n in range(5):
            await bus.publish_event(ping(run_id, n))
        nats_server.stop()

        async def restart_soon() -> None:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(nats_server.start)

        restarter = asyncio.create_task(restart_soon())
        # published while the server is down: retried with the same message id until acked
        results = await asyncio.gather(*(bus.publish_event(ping(run_id, n)) for n in range(5, 10)))
        await restarter
        assert len(set(results)) == 5
        history = await bus.read_run(run_id)
        assert sorted(e.data.seq for e in history.events) == list(range(10))
    finally:
        await bus.close()


async def test_acked_event_survives_killing_a_node(nats_cluster: list[NatsProcess], run_id: str) -> None:
    urls = ",".join(node.url for node in nats_cluster)
    bus = await Bus.connect(urls, settings=StreamSettings(replicas=3))
    try:
        await _provision_when_cluster_ready(bus)
        info = await bus.js.stream_info("CORTEX_EVENTS")
        assert info.config.num_replicas == 3
        for n in range(10):
            await bus.publish_event(ping(run_id, n), expected_last_seq=None)
        leader = info.cluster.leader
        victim = next(node for node in nats_cluster if node.name == leader)
        victim.kill()
        survivor = next(node for node in nats_cluster if node is not victim)
        reader = await Bus.connect(survivor.url)
        try:
            history = await _read_when_available(reader, run_id)
            assert [e.data.seq for e in history.events] == list(range(10))
        finally:
            await reader.close()
    finally:
        await bus.close()


async def _provision_when_cluster_ready(bus: Bus, timeout_s: float = 30.0) -> None:
    """A fresh cluster needs a moment to elect its JetStream meta leader."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await bus.provision()
            return
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.25)


async def _read_when_available(bus: Bus, run_id: str, timeout_s: float = 30.0):
    """After a leader is killed the stream elects a new one; read once it has."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            return await bus.read_run(run_id)
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.25)
