"""JSON errors of the HTTP API (``{"error": {"message", "type", "code"}}``) and the one map from Cortex errors."""

from __future__ import annotations

import json
import logging

from aiohttp import web
from nats.errors import Error as NatsError

from cortex.errors import (
    BusError,
    ConcurrencyConflict,
    ConfigError,
    CortexError,
    ManifestError,
)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    422: "invalid_request_error",
    500: "server_error",
    503: "service_unavailable",
}


class _JsonHTTPError(web.HTTPException):
    """An HTTP error with any status and a JSON body (aiohttp's classes fix the status)."""

    def __init__(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        super().__init__(text=body, content_type="application/json", headers=headers)


def error_body(status: int, message: str, code: str, type_: str | None = None) -> dict:
    """The error object OpenAI clients understand: ``{"error": {"message", "type", "code"}}``."""
    return {"error": {"message": message, "type": type_ or _TYPES.get(status, "api_error"), "code": code}}


def api_error(
    status: int, message: str, *, code: str, type_: str | None = None, headers: dict[str, str] | None = None
) -> web.HTTPException:
    """An aiohttp exception carrying a JSON error body; raise it from a handler."""
    return _JsonHTTPError(status, json.dumps(error_body(status, message, code, type_)), headers)


def from_cortex_error(exc: CortexError) -> web.HTTPException:
    """Map a Cortex error to an HTTP error (the one place where this adapter does so)."""
    if isinstance(exc, ManifestError):
        return api_error(404, str(exc), code="agent_not_found")
    if isinstance(exc, ConfigError):
        return api_error(400, str(exc), code="invalid_value")
    if isinstance(exc, ConcurrencyConflict):
        return api_error(409, f"the run already exists ({exc})", code="run_exists")
    if isinstance(exc, BusError):
        return api_error(503, str(exc), code="bus_unavailable")
    return api_error(500, str(exc), code="internal_error")


def from_unexpected(exc: Exception) -> web.HTTPException:
    """Map an error nobody raised on purpose: NATS trouble is 503, anything else 500 (and logged)."""
    if isinstance(exc, NatsError):
        return api_error(503, f"NATS did not answer: {exc}", code="bus_unavailable")
    logging.getLogger("cortex.api").exception("unexpected error")
    return api_error(500, f"internal error: {type(exc).__name__}: {exc}", code="internal_error")


def from_http_error(exc: web.HTTPException) -> web.HTTPException:
    """Give aiohttp's own errors (unknown route, wrong method) a JSON body."""
    if exc.content_type == "application/json" or exc.status < 400:
        return exc
    code = {404: "route_not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
    message = exc.reason
    if exc.status == 405 and isinstance(exc, web.HTTPMethodNotAllowed):
        message = f"method {exc.method} not allowed; use {', '.join(sorted(exc.allowed_methods))}"
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    return api_error(exc.status, message, code=code, headers=headers)
