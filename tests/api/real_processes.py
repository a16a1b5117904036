"""The real kernel and llm worker as processes, and an agent whose scripted model they run."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import pytest

from cortex.bus.client import Bus
from cortex.manifests.store import ManifestStore
from cortex.specs import AgentSpec
from tests.support.nats import NatsProcess

SCRIPT = [
    {"user_contains": "hello", "text": '<response final="true">Hi there!</response>'},
    {"text": '<thought>Setting it.</thought><action type="internal" name="set" id="x">{"name": "n", "value": 42}'
             '</action><response final="true">The value is $x.value.</response>'},
]
"""``hello`` gets a greeting; anything else sets a variable and answers with a reference to it."""


async def apply_scripted_agent(bus: Bus, name: str = "calc") -> None:
    """Store an agent whose model is the scripted provider (streams token by token)."""
    options = {"script": SCRIPT, "ttft_s": 0.0, "token_delay_s": 0.002}
    await ManifestStore(bus).put("agent", name, AgentSpec(name=name, provider="scripted", model="s",
                                                          provider_options=options))


@pytest.fixture
async def real_kernel(nats_server: NatsProcess, bus: Bus, tmp_path) -> AsyncIterator[None]:
    """`cortex kernel` and `cortex worker llm` running against the test server, and the agent ``calc``."""
    await apply_scripted_agent(bus)
    env = {**os.environ, "CORTEX_NATS_URL": nats_server.url, "CORTEX_HOME": str(tmp_path / "home")}
    procs = []
    for words in (("kernel",), ("worker", "llm")):
        log = open(tmp_path / f"{words[-1]}.log", "wb")
        procs.append(await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cortex.cli.main", *words, env=env, stdout=log, stderr=log,
        ))
        log.close()
    try:
        yield
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
