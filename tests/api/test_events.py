"""``GET /api/events``: server-sent events per run or for all runs, resumable with Last-Event-ID."""

from __future__ import annotations

import asyncio

from cortex.bus.client import Bus
from tests.api.conftest import Api
from tests.api.helpers import outcome, read_sse
from tests.api.played_kernel import PlayedKernel


async def test_a_run_streams_from_its_first_event_with_sequence_ids(api: Api, bus: Bus, kernel: PlayedKernel) -> None:
    _, body = await api.call("POST", "/api/runs", json={"agent": "echo", "message": "hi"})
    run_id = body["run_id"]
    async with api.http.get(api.url + "/api/events", params={"run": run_id}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        items = await read_sse(response, until="run.completed")
    history = await bus.read_run(run_id)
    assert [event["id"] for _, event in items] == [event.id for event in history.events]
    assert items[-1][0] == history.last_seq
    ids = [seq for seq, _ in items]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(event["run_id"] == run_id and "time" in event for _, event in items)


async def test_last_event_id_resumes_after_that_event(api: Api, bus: Bus, kernel: PlayedKernel) -> None:
    _, body = await api.call("POST", "/api/runs", json={"agent": "echo", "message": "hi"})
    run_id = body["run_id"]
    await outcome(bus, run_id)
    async with api.http.get(api.url + "/api/events", params={"run": run_id}) as response:
        first = await read_sse(response, until="run.completed")
    resume_at = first[2][0]
    headers = {"Last-Event-ID": str(resume_at)}
    async with api.http.get(api.url + "/api/events", params={"run": run_id}, headers=headers) as response:
        resumed = await read_sse(response, until="run.completed")
    assert resumed == first[3:]
    async with api.http.get(api.url + "/api/events", params={"run": run_id, "last_event_id": str(resume_at)}) as response:
        assert await read_sse(response, until="run.completed") == first[3:]


async def test_without_a_run_every_new_event_streams(api: Api, bus: Bus, kernel: PlayedKernel) -> None:
    _, before = await api.call("POST", "/api/runs", json={"agent": "echo", "message": "earlier"})
    await outcome(bus, before["run_id"])
    async with api.http.get(api.url + "/api/events") as response:
        assert response.status == 200
        reading = asyncio.create_task(read_sse(response, until="run.completed"))
        run_ids = set()
        while not reading.done():  # the stream starts "from now": start runs until one is seen
            _, body = await api.call("POST", "/api/runs", json={"agent": "echo", "message": "now"})
            run_ids.add(body["run_id"])
            await asyncio.wait({reading}, timeout=0.5)
        items = reading.result()
    assert before["run_id"] not in {event["run_id"] for _, event in items}
    assert items[-1][1]["run_id"] in run_ids


async def test_bad_last_event_id_and_bad_run_are_400(api: Api) -> None:
    status, body = await api.call("GET", "/api/events", headers={"Last-Event-ID": "yesterday"})
    assert status == 400 and body["error"]["code"] == "invalid_last_event_id"
    status, body = await api.call("GET", "/api/events", params={"run": "a.b"})
    assert status == 400 and body["error"]["code"] == "invalid_value"
