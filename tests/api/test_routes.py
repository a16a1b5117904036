"""Every route of the HTTP API against a real nats-server: runs, messages, cancel, read models, auth, errors."""

from __future__ import annotations

from datetime import datetime, timezone

import aiohttp
import pytest

from cortex.adapters.http.app import make_app
from cortex.bus.client import Bus
from cortex.bus.events import PluginData, PluginRegistered
from cortex.errors import ConfigError
from cortex.runs import run_state
from cortex.specs import ToolSpec
from tests.api.conftest import TOKEN, Api
from tests.api.helpers import outcome, project
from tests.api.played_kernel import PlayedKernel


async def test_ping_answers_without_a_token(api: Api) -> None:
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(api.url + "/ping") as response:
            assert response.status == 200
            body = await response.json()
    assert body["ok"] is True and body["nats"] is True


@pytest.mark.parametrize("header, code", [
    (None, "missing_token"), ("Bearer wrong", "invalid_token"), (f"Basic {TOKEN}", "missing_token"),
])
async def test_a_bearer_token_is_required(api: Api, header: str | None, code: str) -> None:
    headers = {"Authorization": header} if header else {}
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(api.url + "/api/agents", headers=headers) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            body = await response.json()
    assert body["error"]["code"] == code and body["error"]["type"] == "authentication_error"


async def test_local_mode_needs_no_token(local_api: Api, kernel: PlayedKernel) -> None:
    status, body = await local_api.call("POST", "/api/runs", json={"agent": "echo", "message": "hi"})
    assert status == 201 and body["run_id"].startswith("r")


async def test_without_local_mode_a_token_is_mandatory(bus: Bus) -> None:
    with pytest.raises(ConfigError, match="CORTEX_API_TOKEN"):
        make_app(bus, token=None, local_mode=False)


async def test_a_run_started_over_http_completes_and_shows_in_the_read_models(
    api: Api, bus: Bus, kernel: PlayedKernel
) -> None:
    status, body = await api.call("POST", "/api/runs", json={"agent": "echo", "message": "hello", "variables": {"x": 1}})
    assert status == 201
    run_id = body["run_id"]
    assert body["events"] == f"/api/events?run={run_id}"
    assert (await outcome(bus, run_id)).data.response == "You said: hello"
    requested = (await bus.read_run(run_id)).events[0]
    assert requested.correlation_id == run_id and requested.data.variables == {"x": 1}

    await project(bus)
    status, run = await api.call("GET", f"/api/runs/{run_id}")
    assert status == 200 and run["status"] == "completed" and run["agent"] == "echo"
    assert run["response"] == "You said: hello" and run["usage"]["prompt_tokens"] == 11

    status, listed = await api.call("GET", "/api/runs", params={"agent": "echo", "status": "completed", "limit": "5"})
    assert status == 200 and [r["run_id"] for r in listed["runs"]] == [run_id]
    status, listed = await api.call("GET", "/api/runs", params={"agent": "someone-else"})
    assert status == 200 and listed["runs"] == []

    status, progression = await api.call("GET", f"/api/runs/{run_id}/progression")
    assert status == 200 and "now" in str(progression)

    status, agents = await api.call("GET", "/api/agents")
    assert status == 200 and [a["name"] for a in agents["agents"]] == ["echo"]


async def test_plugins_lists_registered_plugins(api: Api, bus: Bus) -> None:
    await bus.publish_event(PluginRegistered(
        id="plugin-1", time=datetime.now(timezone.utc),
        data=PluginData(plugin="weather", worker_id="tool-1", version="1.0", tools=(ToolSpec(name="weather.now"),)),
    ))
    await project(bus)
    status, body = await api.call("GET", "/api/plugins")
    assert status == 200 and [p["name"] for p in body["plugins"]] == ["weather"]
    assert "weather.now" in str(body)


async def test_messages_and_cancel(api: Api, bus: Bus, kernel: PlayedKernel) -> None:
    _, body = await api.call("POST", "/api/runs", json={"agent": "echo", "message": "hang on"})
    run_id = body["run_id"]
    status, sent = await api.call("POST", f"/api/runs/{run_id}/messages", json={"text": "hang: still there?"})
    assert status == 202 and sent["run_id"] == run_id and sent["seq"] > 0
    texts = [e.data.text for e in (await bus.read_run(run_id)).events if e.type == "message.received"]
    assert texts == ["hang: still there?"]

    status, cancelled = await api.call("POST", f"/api/runs/{run_id}/cancel", json={"reason": "enough"})
    assert status == 202 and cancelled["seq"] > sent["seq"]
    assert (await outcome(bus, run_id)).data.reason == "enough"
    assert await run_state(bus, run_id) == "run.cancelled"

    status, error = await api.call("POST", f"/api/runs/{run_id}/messages", json={"text": "hello?"})
    assert status == 409 and error["error"]["code"] == "run_ended"


async def test_cancel_without_a_body_uses_the_default_reason(api: Api, bus: Bus, kernel: PlayedKernel) -> None:
    _, body = await api.call("POST", "/api/runs", json={"agent": "echo", "message": "hang on"})
    status, _ = await api.call("POST", f"/api/runs/{body['run_id']}/cancel")
    assert status == 202
    assert (await outcome(bus, body["run_id"])).data.reason == "cancelled by user"


@pytest.mark.parametrize("method, path, kwargs, status, code, mentions", [
    ("POST", "/api/runs", {"data": b"{not json"}, 400, "invalid_json", "not valid JSON"),
    ("POST", "/api/runs", {"json": ["a", "list"]}, 422, "invalid_body", "JSON object"),
    ("POST", "/api/runs", {"json": {"message": "hi"}}, 422, "missing_field", "'agent'"),
    ("POST", "/api/runs", {"json": {"agent": "echo"}}, 422, "missing_field", "'message'"),
    ("POST", "/api/runs", {"json": {"agent": "echo", "message": 3}}, 422, "invalid_field", "'message'"),
    ("POST", "/api/runs", {"json": {"agent": "echo", "message": "m", "colour": 1}}, 422, "unknown_field", "'colour'"),
    ("POST", "/api/runs", {"json": {"agent": "ghost", "message": "hi"}}, 404, "agent_not_found", "ghost"),
    ("POST", "/api/runs", {"json": {"agent": "echo", "message": "m", "run_id": "a.b"}}, 400, "invalid_value", "run id"),
    ("POST", "/api/runs/nope/messages", {"json": {"text": "hi"}}, 404, "run_not_found", "nope"),
    ("POST", "/api/runs/nope/cancel", {}, 404, "run_not_found", "nope"),
    ("GET", "/api/runs/nope", {}, 404, "run_not_found", "nope"),
    ("GET", "/api/runs/nope/progression", {}, 404, "run_not_found", "nope"),
    ("GET", "/api/runs/a*b", {}, 400, "invalid_value", "run id"),
    ("GET", "/api/runs", {"params": {"limit": "many"}}, 400, "invalid_parameter", "limit"),
    ("GET", "/api/runs", {"params": {"limit": "0"}}, 400, "invalid_value", "limit"),
    ("GET", "/api/runs", {"params": {"status": "sleeping"}}, 400, "invalid_value", "sleeping"),
    ("GET", "/api/nothing-here", {}, 404, "route_not_found", "Not Found"),
    ("DELETE", "/api/runs", {}, 405, "method_not_allowed", "GET"),
])
async def test_bad_requests_get_a_json_error_that_says_what_is_wrong(
    api: Api, kernel: PlayedKernel, method: str, path: str, kwargs: dict, status: int, code: str, mentions: str
) -> None:
    got, body = await api.call(method, path, **kwargs)
    assert got == status, body
    assert body["error"]["code"] == code
    assert mentions in body["error"]["message"]
    assert body["error"]["type"]


async def test_a_run_id_can_be_chosen_once(api: Api, kernel: PlayedKernel) -> None:
    status, body = await api.call("POST", "/api/runs", json={"agent": "echo", "message": "hi", "run_id": "mine-1"})
    assert status == 201 and body["run_id"] == "mine-1"
    status, body = await api.call("POST", "/api/runs", json={"agent": "echo", "message": "hi", "run_id": "mine-1"})
    assert status == 409 and body["error"]["code"] == "run_exists"
