"""`cortex up --detach` runs the whole local deployment supervised; `cortex down` stops all of it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import aiohttp

from cortex.bus.embedded import free_port, port_is_free
from cortex.supervisor import read_record
from tests.api.real_processes import SCRIPT
from tests.cli.conftest import cortex
from tests.cli.test_supervisor import alive, until

AGENT = {"kind": "agent", "name": "hello", "provider": "scripted", "model": "s",
         "provider_options": {"script": SCRIPT, "ttft_s": 0.0, "token_delay_s": 0.0}}


async def get(url: str) -> tuple[int, dict]:
    """GET ``url``; (0, {}) while nothing answers."""
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            return response.status, await response.json(content_type=None)
    except aiohttp.ClientConnectionError:
        return 0, {}


async def poll(url: str, ready, timeout: float = 60.0) -> dict:
    """GET ``url`` until ``ready(status, body)``; return the body."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status, body = await get(url)
        if ready(status, body):
            return body
        assert asyncio.get_running_loop().time() < deadline, f"{url} answered {status} {body}"
        await asyncio.sleep(0.2)


async def test_up_detach_supervises_everything_and_down_stops_it(tmp_path: Path) -> None:
    home, manifests = tmp_path / "home", tmp_path / "manifests"
    manifests.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CORTEX_NATS_URL", "CORTEX_API_TOKEN")}
    env["CORTEX_HOME"] = str(home)
    nats_port, api_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    code, out, err = await cortex(env, "up", "--detach", "--port", str(nats_port), "--api-port", str(api_port),
                                  "--manifests", str(manifests), timeout=60)
    children: dict[str, int] = {}
    try:
        assert code == 0, err
        assert f"nats://127.0.0.1:{nats_port}" in out and "in the background" in out
        record = read_record(home / "processes.json")
        assert record is not None
        children = record["children"]
        assert {"kernel", "worker-llm", "projections", "api"} <= set(children)

        await poll(api + "/ping", lambda status, body: status == 200 and body["ok"])
        os.kill(children["api"], signal.SIGKILL)  # a crash: the supervisor starts it again
        await until(lambda: (read_record(home / "processes.json") or {}).get("children", {}).get("api")
                    not in (None, children["api"]), timeout=30)
        await poll(api + "/ping", lambda status, body: status == 200)
        assert "api exited with code -9" in (home / "logs" / "supervisor.log").read_text()
        assert "Cortex API on" in (home / "logs" / "api.log").read_text()

        (manifests / "hello.yaml").write_text(json.dumps(AGENT))  # JSON is YAML; the watch applies it
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                async with http.post(api + "/api/runs", json={"agent": "hello", "message": "hello"}) as response:
                    if response.status == 201:
                        run_id = (await response.json())["run_id"]
                        break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("the manifest was never applied")
        run = await poll(f"{api}/api/runs/{run_id}", lambda status, body: body.get("status") == "completed")
        assert run["response"] == "Hi there!"
        children = read_record(home / "processes.json")["children"]
    finally:
        code, out, err = await cortex(env, "down", timeout=60)
    assert code == 0, err
    assert "supervisor" in out and "stopped the embedded NATS server" in out
    assert not any(alive(pid) for pid in children.values())
    assert port_is_free(nats_port) and port_is_free(api_port)
    assert not (home / "processes.json").exists()
