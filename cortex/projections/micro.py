"""The queries as a NATS micro service ``cortex-projections`` (``nats micro ls`` lists it).

Requests and replies are JSON. Endpoints (subject ``cortex.q.<endpoint>``):

- ``runs.list`` ``{"limit": 50, "agent": null, "status": null}`` -> list of runs
- ``runs.get`` ``{"run_id": ".."}`` -> the run
- ``progression.get`` ``{"run_id": ".."}`` -> the run's steps
- ``agents.list`` ``{}`` -> list of agents
- ``plugins.list`` ``{}`` -> list of plugins
- ``projections.rebuild`` ``{}`` -> ``{"folded": n}`` (only where the projector runs)

Errors are micro-service errors (headers ``Nats-Service-Error-Code`` 400 or 404 and
``Nats-Service-Error``) with the body ``{"error": "..."}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import EndpointConfig, Service, ServiceConfig

from cortex import __version__
from cortex.bus.client import Bus
from cortex.errors import ConfigError, CortexError
from cortex.projections.projector import Projector
from cortex.projections.queries import ProjectionQueries

SERVICE_NAME = "cortex-projections"
SUBJECT_PREFIX = "cortex.q"

Query = Callable[[dict[str, Any]], Awaitable[Any]]


class NotFound(Exception):
    """The request names something the projections do not hold (answered with code 404)."""


def subject(endpoint: str) -> str:
    """The request subject of an endpoint, e.g. ``cortex.q.runs.list``."""
    return f"{SUBJECT_PREFIX}.{endpoint}"


def _run_id(body: dict[str, Any]) -> str:
    run_id = body.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise ConfigError('the request needs "run_id" (a string)')
    return run_id


def _found(value: Any, what: str) -> Any:
    if value is None:
        raise NotFound(f"no {what} (the projections have not seen it)")
    return value


def query_handlers(queries: ProjectionQueries) -> dict[str, Query]:
    """Each endpoint name and the function answering it."""

    async def runs_list(body: dict[str, Any]) -> Any:
        limit = body.get("limit", 50)
        if not isinstance(limit, int):
            raise ConfigError('"limit" must be an integer')
        return await queries.list_runs(limit=limit, agent=body.get("agent"), status=body.get("status"))

    async def runs_get(body: dict[str, Any]) -> Any:
        run_id = _run_id(body)
        return _found(await queries.get_run(run_id), f"run {run_id!r}")

    async def progression_get(body: dict[str, Any]) -> Any:
        run_id = _run_id(body)
        return _found(await queries.get_progression(run_id), f"progression for run {run_id!r}")

    async def agents_list(body: dict[str, Any]) -> Any:
        return await queries.list_agents()

    async def plugins_list(body: dict[str, Any]) -> Any:
        return await queries.list_plugins()

    return {
        "runs.list": runs_list,
        "runs.get": runs_get,
        "progression.get": progression_get,
        "agents.list": agents_list,
        "plugins.list": plugins_list,
    }


def _handler(query: Query) -> Callable[[Request], Awaitable[None]]:
    """Wrap a query: decode the JSON body, answer JSON, map errors to 400 and 404."""

    async def handle(request: Request) -> None:
        try:
            body = msgspec.json.decode(request.data) if request.data.strip() else {}
            if not isinstance(body, dict):
                raise ConfigError("the request body must be a JSON object")
            result = await query(body)
        except NotFound as exc:
            await request.respond_error("404", str(exc), msgspec.json.encode({"error": str(exc)}))
            return
        except (CortexError, msgspec.DecodeError) as exc:
            message = f"bad request: {exc}"
            await request.respond_error("400", message, msgspec.json.encode({"error": message}))
            return
        await request.respond(msgspec.json.encode(result))

    return handle


async def start_service(bus: Bus, projector: Projector | None = None) -> Service:
    """Start the micro service on ``bus`` (with the rebuild endpoint when ``projector`` is given)."""
    handlers = query_handlers(ProjectionQueries(bus))
    if projector is not None:

        async def rebuild(body: dict[str, Any]) -> Any:
            return {"folded": await projector.rebuild()}

        handlers["projections.rebuild"] = rebuild
    service = await add_service(
        bus.nc,
        ServiceConfig(
            name=SERVICE_NAME,
            version=__version__,
            description="Cortex read models: runs, progressions, agents, plugins",
            metadata={"kv": "cortex_runs,cortex_progressions,cortex_agents,cortex_plugins"},
        ),
    )
    for endpoint, query in handlers.items():
        await service.add_endpoint(
            EndpointConfig(name=endpoint.replace(".", "_"), subject=subject(endpoint), handler=_handler(query))
        )
    return service
