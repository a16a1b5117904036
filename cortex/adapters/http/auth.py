"""Bearer-token authentication of the HTTP API."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from cortex.adapters.http.errors import api_error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC_PATHS = frozenset({"/ping", "/openapi.json"})


def auth_middleware(token: str | None, local_mode: bool) -> Callable:
    """Require ``Authorization: Bearer <token>`` on every path but /ping and /openapi.json, unless in local mode."""

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if local_mode or request.path in PUBLIC_PATHS:
            return await handler(request)
        challenge = {"WWW-Authenticate": 'Bearer realm="cortex"'}
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise api_error(
                401, "missing bearer token: send `Authorization: Bearer <CORTEX_API_TOKEN>`",
                code="missing_token", headers=challenge,
            )
        if not hmac.compare_digest(given.strip().encode(), (token or "").encode()):
            raise api_error(401, "invalid bearer token", code="invalid_token", headers=challenge)
        return await handler(request)

    return check_token
