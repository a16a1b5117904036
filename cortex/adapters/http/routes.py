"""The route table: every route once, with what the OpenAPI document says about it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel

from cortex.adapters.http import events_api, openai_api, runs_api
from cortex.adapters.http.bodies import CancelCreate, ChatCompletionCreate, MessageCreate, RunAccepted, RunCreate

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Param:
    """A query parameter or header of a route."""

    name: str
    description: str
    schema: dict = field(default_factory=lambda: {"type": "string"})
    where: str = "query"


@dataclass(frozen=True)
class Route:
    """One route: method, path, handler, and its documentation."""

    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    body_optional: bool = False
    params: tuple[Param, ...] = ()
    ok_status: int = 200
    ok_schema: type[BaseModel] | None = None
    ok_media: str = "application/json"
    errors: tuple[int, ...] = ()
    public: bool = False


RUN_LIMIT = Param("limit", "how many runs (1-1000, default 50)", {"type": "integer", "minimum": 1, "maximum": 1000})

ROUTES: tuple[Route, ...] = (
    Route("GET", "/ping", runs_api.ping, "Health: the API answers and NATS is connected", public=True,
          errors=(503,)),
    Route("GET", "/openapi.json", runs_api.openapi, "This OpenAPI document", public=True),
    Route("POST", "/api/runs", runs_api.create_run, "Start a run of an applied agent", body=RunCreate,
          ok_status=201, errors=(400, 404, 409, 422)),
    Route("GET", "/api/runs", runs_api.list_runs, "List runs, newest first",
          params=(RUN_LIMIT, Param("agent", "only runs of this agent"), Param("status", "only runs in this status")),
          errors=(400,)),
    Route("GET", "/api/runs/{id}", runs_api.get_run, "One run: status, agent, times, usage, response",
          errors=(400, 404)),
    Route("GET", "/api/runs/{id}/progression", runs_api.get_progression,
          "A run's ordered steps: turns, actions with states and timings, responses", errors=(400, 404)),
    Route("POST", "/api/runs/{id}/messages", runs_api.post_message, "Send a further user message to a run",
          body=MessageCreate, ok_status=202, ok_schema=RunAccepted, errors=(400, 404, 409, 422)),
    Route("POST", "/api/runs/{id}/cancel", runs_api.cancel, "Cancel a run", body=CancelCreate, body_optional=True,
          ok_status=202, ok_schema=RunAccepted, errors=(400, 404, 422)),
    Route("GET", "/api/agents", runs_api.list_agents, "Applied agents with active and total runs"),
    Route("GET", "/api/plugins", runs_api.list_plugins, "Registered plugins, their tools and live workers"),
    Route("GET", "/api/events", events_api.stream_events,
          "Events as server-sent events (id = stream sequence), resumable with Last-Event-ID",
          params=(Param("run", "only this run's events, from its first one (default: every run, from now)"),
                  Param("Last-Event-ID", "resume after this stream sequence", {"type": "integer"}, "header"),
                  Param("last_event_id", "the same as a query parameter", {"type": "integer"})),
          ok_media="text/event-stream", errors=(400,)),
    Route("POST", "/v1/chat/completions", openai_api.chat_completions,
          "OpenAI-compatible chat completions; model = agent name; metadata.run_id continues a run",
          body=ChatCompletionCreate, errors=(400, 404, 409, 422, 500)),
)


def add_routes(app: web.Application) -> None:
    """Register every route of the table."""
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
