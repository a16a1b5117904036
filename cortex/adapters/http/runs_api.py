"""Handlers of the run, agent, plugin and health routes."""

from __future__ import annotations

from aiohttp import web

from cortex import __version__
from cortex.adapters.http.bodies import CancelCreate, MessageCreate, RunCreate, read_body
from cortex.adapters.http.errors import api_error
from cortex.adapters.http.state import BUS, OPENAPI, QUERIES
from cortex.bus.subjects import check_token
from cortex.bus.client import Bus
from cortex.runs import cancel_run, run_state, send_message, start_run


def path_run_id(request: web.Request) -> str:
    """The ``{id}`` of the path, checked (400 if it cannot be a run id)."""
    return check_token(request.match_info["id"])


async def open_run(bus: Bus, run_id: str) -> str:
    """``run_id`` if that run can take a message: 404 if it was never requested, 409 if it failed or was cancelled."""
    state = await run_state(bus, check_token(run_id))
    if state is None:
        raise api_error(404, f"no run {run_id!r}", code="run_not_found")
    if state in ("run.failed", "run.cancelled"):
        raise api_error(409, f"run {run_id!r} has ended ({state}); start a new one", code="run_ended")
    return run_id


async def ping(request: web.Request) -> web.Response:
    """Health: the API answers and its NATS connection is up."""
    connected = request.app[BUS].nc.is_connected
    return web.json_response({"ok": connected, "nats": connected, "version": __version__}, status=200 if connected else 503)


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document."""
    return web.json_response(request.app[OPENAPI])


async def create_run(request: web.Request) -> web.Response:
    """Start a run; 201 with its id."""
    body = await read_body(request, RunCreate)
    run_id = await start_run(
        request.app[BUS], body.agent, body.message, run_id=body.run_id, variables=body.variables
    )
    return web.json_response(
        {"run_id": run_id, "events": f"/api/events?run={run_id}"}, status=201,
        headers={"Location": f"/api/runs/{run_id}"},
    )


async def post_message(request: web.Request) -> web.Response:
    """Send a further user message to a run; 202."""
    run_id = await open_run(request.app[BUS], request.match_info["id"])
    body = await read_body(request, MessageCreate)
    seq = await send_message(request.app[BUS], run_id, body.text)
    return web.json_response({"run_id": run_id, "seq": seq}, status=202)


async def cancel(request: web.Request) -> web.Response:
    """Ask for the run to be cancelled; 202 (the kernel publishes ``run.cancelled``)."""
    run_id = path_run_id(request)
    if await run_state(request.app[BUS], run_id) is None:
        raise api_error(404, f"no run {run_id!r}", code="run_not_found")
    body = await read_body(request, CancelCreate, optional=True)
    seq = await cancel_run(request.app[BUS], run_id, body.reason)
    return web.json_response({"run_id": run_id, "seq": seq}, status=202)


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "50")
    if not raw.isdigit():
        raise api_error(400, f"query parameter 'limit' must be an integer, not {raw!r}", code="invalid_parameter")
    return int(raw)


async def list_runs(request: web.Request) -> web.Response:
    """Recent runs, newest first, optionally of one agent or in one status (400 for a bad limit or status)."""
    query = request.query
    runs = await request.app[QUERIES].list_runs(_limit(request), query.get("agent") or None, query.get("status") or None)
    return web.json_response({"runs": runs})


async def get_run(request: web.Request) -> web.Response:
    """One run's read model; 404 if unknown."""
    run_id = path_run_id(request)
    run = await request.app[QUERIES].get_run(run_id)
    if run is None:
        raise api_error(404, f"no run {run_id!r}", code="run_not_found")
    return web.json_response(run)


async def get_progression(request: web.Request) -> web.Response:
    """One run's ordered steps (turns, actions with states and timings, responses); 404 if unknown."""
    run_id = path_run_id(request)
    progression = await request.app[QUERIES].get_progression(run_id)
    if progression is None:
        raise api_error(404, f"no progression for run {run_id!r}", code="run_not_found")
    return web.json_response(progression)


async def list_agents(request: web.Request) -> web.Response:
    """Applied agents with their run counts."""
    return web.json_response({"agents": await request.app[QUERIES].list_agents()})


async def list_plugins(request: web.Request) -> web.Response:
    """Registered plugins, their tools and live workers."""
    return web.json_response({"plugins": await request.app[QUERIES].list_plugins()})
