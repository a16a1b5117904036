"""A whole local deployment (`cortex up --detach`) with the example agents applied."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from cortex.bus.embedded import free_port
from tests.cli.conftest import cortex

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass
class Deployment:
    """The API's base URL and the environment the CLI needs to reach the deployment."""

    api: str
    env: dict[str, str]
    home: Path

    async def start_run(self, agent: str, message: str) -> str:
        """POST /api/runs; return the run id."""
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.api}/api/runs", json={"agent": agent, "message": message}) as response:
                body = await response.json()
                assert response.status == 201, body
                return body["run_id"]

    async def events_until_end(self, run_id: str, timeout: float) -> list[dict]:
        """Read the run's server-sent events until the run ends."""
        events: list[dict] = []
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{self.api}/api/events", params={"run": run_id}) as response:
                assert response.status == 200

                async def read() -> None:
                    async for raw in response.content:
                        line = raw.decode().rstrip("\n")
                        if line.startswith("data: "):
                            events.append(json.loads(line[6:]))
                            if events[-1]["type"] in ("run.completed", "run.failed", "run.cancelled"):
                                return

                await asyncio.wait_for(read(), timeout)
        return events

    async def get(self, path: str, ready=lambda body: True, timeout: float = 30.0) -> dict:
        """GET an API path until ``ready(body)`` (the projections catch up asynchronously)."""
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                async with http.get(self.api + path) as response:
                    body = await response.json(content_type=None)
                if response.status == 200 and ready(body):
                    return body
                assert asyncio.get_running_loop().time() < deadline, f"{path}: {response.status} {body}"
                await asyncio.sleep(0.2)


def run_cortex(env: dict[str, str], *args: str, timeout: float) -> tuple[int, str, str]:
    """Run the cortex CLI synchronously (module-scoped setup runs outside the tests' event loops)."""
    return asyncio.run(cortex(env, *args, timeout=timeout))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """`cortex up --detach` on free ports with the examples applied; `cortex down` afterwards."""
    tmp = tmp_path_factory.mktemp("e2e")
    home = tmp / "home"
    examples = EXAMPLES  # used in place: sandboxed tools must be able to read the corpus folder
    with sqlite3.connect(examples / "research" / "data" / "papers.db") as conn:  # (git ignores it)
        conn.executescript((examples / "research" / "data" / "papers.sql").read_text())
    (tmp / "manifests").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CORTEX_NATS_URL", "CORTEX_API_TOKEN")}
    env["CORTEX_HOME"] = str(home)
    api_port = free_port()
    code, out, err = run_cortex(
        env, "up", "--detach", "--port", str(free_port()), "--api-port", str(api_port),
        "--manifests", str(tmp / "manifests"), timeout=90,
    )
    assert code == 0, err
    url = out.strip().splitlines()
    env["CORTEX_NATS_URL"] = next(line for line in url if line.startswith("nats://"))
    try:
        for folder in (examples / "dag-demo", examples / "research", Path(__file__).parent / "agents"):
            code, out, err = run_cortex(env, "apply", str(folder), timeout=120)
            assert code == 0, out + err
        yield Deployment(api=f"http://127.0.0.1:{api_port}", env=env, home=home)
    finally:
        run_cortex(env, "down", timeout=60)
