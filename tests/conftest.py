"""Shared fixtures: real nats-server processes on free ports (never a mocked broker)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cortex.bus.client import Bus
from tests.support.nats import NatsProcess, start_cluster


def _docker_engine_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no engine"
        return False


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsProcess]:
    """A fresh single-node nats-server with JetStream (or a testcontainer with CORTEX_TEST_NATS=docker)."""
    if os.environ.get("CORTEX_TEST_NATS") == "docker":
        if not _docker_engine_available():
            pytest.skip("CORTEX_TEST_NATS=docker but no Docker engine answers here")
        from testcontainers.community.nats import NatsContainer

        with NatsContainer("nats:2.15", jetstream=True) as container:  # pragma: no cover - needs docker
            proc = NatsProcess(store_dir=tmp_path / "unused", port=int(container.get_exposed_port(4222)))
            yield proc
        return
    server = NatsProcess(store_dir=tmp_path / "js").start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[list[NatsProcess]]:
    """A 3-node JetStream cluster on loopback ports."""
    nodes = start_cluster(tmp_path)
    try:
        yield nodes
    finally:
        for node in nodes:
            node.kill()


@pytest.fixture
async def bus(nats_server: NatsProcess) -> AsyncIterator[Bus]:
    """A connected Bus with streams and buckets provisioned."""
    client = await Bus.connect(nats_server.url, name="test")
    await client.provision()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def run_id() -> str:
    """A fresh run id."""
    return "r" + uuid.uuid4().hex[:12]
