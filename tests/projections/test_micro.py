"""The NATS micro service: real requests, the $SRV discovery subjects, errors, and a rebuild on request."""

from __future__ import annotations

import json

import msgspec
import pytest
from nats.errors import NoRespondersError

from cortex.bus.client import Bus
from cortex.projections.micro import SERVICE_NAME, start_service, subject
from cortex.projections.projector import Projector
from tests.projections.events import chatty_run, golden_events


async def request(bus: Bus, endpoint: str, body: dict | None = None):
    return await bus.nc.request(subject(endpoint), json.dumps(body or {}).encode(), timeout=5)


async def test_queries_answer_over_nats(bus: Bus) -> None:
    await bus.publish_pipelined([*golden_events(), *chatty_run("r-chat")])
    projector = Projector(bus)
    await projector.catch_up()
    service = await start_service(bus)
    try:
        runs = json.loads((await request(bus, "runs.list", {"limit": 5})).data)
        assert {r["run_id"] for r in runs} == {"golden", "r-chat"}
        one = json.loads((await request(bus, "runs.list", {"status": "completed", "agent": "writer"})).data)
        assert [r["run_id"] for r in one] == ["r-chat"]
        run = json.loads((await request(bus, "runs.get", {"run_id": "golden"})).data)
        assert (run["status"], run["agent"]) == ("completed", "researcher")
        progression = json.loads((await request(bus, "progression.get", {"run_id": "r-chat"})).data)
        assert [s["kind"] for s in progression["steps"]][:2] == ["message", "turn"]
        agents = json.loads((await request(bus, "agents.list")).data)
        assert {a["name"] for a in agents} == {"researcher", "writer"}
        assert json.loads((await request(bus, "plugins.list")).data) == []
        with pytest.raises(NoRespondersError):  # only a service with a projector offers rebuilds
            await request(bus, "projections.rebuild")
    finally:
        await service.stop()
        await projector.close()


async def test_errors_are_service_errors_with_a_json_body(bus: Bus) -> None:
    service = await start_service(bus)
    try:
        missing = await request(bus, "runs.get", {"run_id": "nobody"})
        assert missing.headers["Nats-Service-Error-Code"] == "404"
        assert "no run 'nobody'" in json.loads(missing.data)["error"]
        for endpoint, body in (("runs.get", {}), ("runs.get", {"run_id": "a.b"}), ("runs.list", {"limit": "x"}),
                               ("runs.list", {"status": "napping"})):
            bad = await request(bus, endpoint, body)
            assert bad.headers["Nats-Service-Error-Code"] == "400", (endpoint, body)
            assert json.loads(bad.data)["error"].startswith("bad request: ")
        garbage = await bus.nc.request(subject("runs.list"), b"{not json", timeout=5)
        assert garbage.headers["Nats-Service-Error-Code"] == "400"
    finally:
        await service.stop()


async def test_the_service_is_discoverable_like_nats_micro_ls_does(bus: Bus) -> None:
    service = await start_service(bus, Projector(bus))
    try:
        ping = json.loads((await bus.nc.request("$SRV.PING", b"", timeout=5)).data)
        assert (ping["name"], ping["type"]) == (SERVICE_NAME, "io.nats.micro.v1.ping_response")
        info = json.loads((await bus.nc.request(f"$SRV.INFO.{SERVICE_NAME}", b"", timeout=5)).data)
        assert {e["subject"] for e in info["endpoints"]} == {
            "cortex.q.runs.list", "cortex.q.runs.get", "cortex.q.progression.get",
            "cortex.q.agents.list", "cortex.q.plugins.list", "cortex.q.projections.rebuild",
        }
        stats = json.loads((await bus.nc.request(f"$SRV.STATS.{SERVICE_NAME}", b"", timeout=5)).data)
        assert stats["id"] == ping["id"]
    finally:
        await service.stop()


async def test_a_rebuild_request_is_done_by_the_serving_projector(bus: Bus) -> None:
    await bus.publish_pipelined(golden_events())
    projector = Projector(bus)
    await projector.catch_up()
    service = await start_service(bus, projector)
    try:
        reply = await bus.nc.request(subject("projections.rebuild"), b"", timeout=30)
        assert msgspec.json.decode(reply.data)["folded"] == len(golden_events())
        run = json.loads((await request(bus, "runs.get", {"run_id": "golden"})).data)
        assert run["status"] == "completed"
    finally:
        await service.stop()
        await projector.close()
