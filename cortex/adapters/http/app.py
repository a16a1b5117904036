"""The aiohttp application of the HTTP API."""

from __future__ import annotations

from aiohttp import web

from cortex.adapters.http.auth import Handler, auth_middleware
from cortex.adapters.http.errors import from_cortex_error, from_http_error, from_unexpected
from cortex.adapters.http.openapi import openapi_document
from cortex.adapters.http.routes import ROUTES, add_routes
from cortex.adapters.http.state import BUS, OPENAPI, QUERIES
from cortex.bus.client import Bus
from cortex.errors import ConfigError, CortexError
from cortex.projections.queries import ProjectionQueries


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as JSON ``{"error": {...}}``; Cortex errors are mapped to a status."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        raise from_http_error(exc) from None
    except CortexError as exc:
        raise from_cortex_error(exc) from None
    except Exception as exc:  # noqa: BLE001 - every error leaves as JSON
        raise from_unexpected(exc) from None


def make_app(bus: Bus, *, token: str | None, local_mode: bool) -> web.Application:
    """The API on ``bus``: a bearer ``token`` is required on every route but /ping and /openapi.json unless ``local_mode``."""
    if not local_mode and not token:
        raise ConfigError("the API needs a bearer token (set CORTEX_API_TOKEN) unless it runs in local mode")
    app = web.Application(middlewares=[json_errors, auth_middleware(token, local_mode)])
    app[BUS] = bus
    app[QUERIES] = ProjectionQueries(bus)
    app[OPENAPI] = openapi_document(ROUTES, auth=not local_mode)
    add_routes(app)
    return app
