"""Typed keys of what the aiohttp application holds."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cortex.bus.client import Bus

BUS = web.AppKey("bus", Bus)
QUERIES = web.AppKey("queries", Any)  # cortex.projections.queries.ProjectionQueries
OPENAPI = web.AppKey("openapi", dict)
