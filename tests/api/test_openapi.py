"""The OpenAPI document lists every route the app serves, and nothing else."""

from __future__ import annotations

import re

import aiohttp

from tests.api.conftest import Api


def _refs(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*map(_refs, node)) if node else set()
    return set()


async def test_every_route_is_documented_and_every_documented_route_exists(api: Api) -> None:
    async with aiohttp.ClientSession() as anonymous:  # public, like /ping
        async with anonymous.get(api.url + "/openapi.json") as response:
            assert response.status == 200
            doc = await response.json()
    assert doc["openapi"].startswith("3.1")
    served = {
        (route.method, route.resource.canonical)
        for route in api.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {(method.upper(), path) for path, operations in doc["paths"].items() for method in operations}
    assert served == documented
    for path, operations in doc["paths"].items():
        for operation in operations.values():
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert names == set(re.findall(r"{(\w+)}", path))
            assert operation["responses"] and operation["summary"]
    schemas = doc["components"]["schemas"]
    assert {ref.rsplit("/", 1)[1] for ref in _refs(doc)} <= set(schemas)
    assert {"RunCreate", "ChatCompletionCreate", "ErrorBody"} <= set(schemas)
    assert doc["paths"]["/api/runs"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("RunCreate")
    assert doc["paths"]["/api/runs"]["get"]["responses"]["401"]
    assert doc["paths"]["/ping"]["get"]["security"] == []
