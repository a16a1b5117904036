"""The OpenAPI 3.1 document, built from the route table and the pydantic body models (so it stays true)."""

from __future__ import annotations

import re
from typing import Any

from pydantic.json_schema import models_json_schema

from cortex import __version__
from cortex.adapters.http.bodies import ErrorBody
from cortex.adapters.http.routes import Route

REF = "#/components/schemas/{model}"
_REASONS = {
    400: "Bad request (not JSON, bad parameter)", 401: "Missing or invalid bearer token",
    404: "Not found", 409: "Conflict", 422: "A field is missing or invalid",
    500: "The run failed or was cancelled", 503: "NATS is unavailable",
}


def _ref(model: type) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _operation(route: Route, auth: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": route.summary, "operationId": route.handler.__name__}
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", route.path)
    ]
    params += [
        {"name": p.name, "in": p.where, "required": False, "description": p.description, "schema": p.schema}
        for p in route.params
    ]
    if params:
        operation["parameters"] = params
    if route.body is not None:
        operation["requestBody"] = {
            "required": not route.body_optional, "content": {"application/json": {"schema": _ref(route.body)}},
        }
    ok_schema = _ref(route.ok_schema) if route.ok_schema else {"type": "object"}
    ok_content = {route.ok_media: {"schema": ok_schema if route.ok_media == "application/json" else {"type": "string"}}}
    if route.path == "/v1/chat/completions":
        ok_content["text/event-stream"] = {"schema": {"type": "string"}}
    responses: dict[str, Any] = {str(route.ok_status): {"description": "OK", "content": ok_content}}
    codes = set(route.errors) | ({401} if auth and not route.public else set())
    for code in sorted(codes):
        responses[str(code)] = {
            "description": _REASONS[code], "content": {"application/json": {"schema": _ref(ErrorBody)}},
        }
    operation["responses"] = responses
    if route.public or not auth:
        operation["security"] = []
    return operation


def openapi_document(routes: tuple[Route, ...], *, auth: bool = True) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``."""
    models = {r.body for r in routes if r.body} | {r.ok_schema for r in routes if r.ok_schema} | {ErrorBody}
    _, defs = models_json_schema([(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
                                 ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, auth)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Cortex API", "version": __version__,
                 "description": "Runs, events and read models of Cortex; OpenAI-compatible chat completions."},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}] if auth else [],
    }
