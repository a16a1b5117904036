"""The manifest store keeps resolved specs in KV for every process to read."""

from __future__ import annotations

import pytest

from cortex.bus.client import Bus
from cortex.errors import ManifestError
from cortex.manifests.store import ManifestStore
from cortex.specs import AgentSpec, ToolSpec


async def test_agent_round_trip_and_listing(bus: Bus) -> None:
    store = ManifestStore(bus)
    spec = AgentSpec(name="helper", provider="scripted", tools=(ToolSpec(name="calc.eval"),))
    assert await store.put("agent", "helper", spec) >= 1
    assert await store.get_agent("helper") == spec
    assert await store.names("agent") == ["helper"]
    await store.delete("agent", "helper")


async def test_unknown_agent_says_how_to_fix(bus: Bus) -> None:
    with pytest.raises(ManifestError, match="cortex apply"):
        await ManifestStore(bus).get_agent("nobody")


async def test_bad_kind_and_name_are_refused(bus: Bus) -> None:
    store = ManifestStore(bus)
    with pytest.raises(ManifestError):
        await store.put("gizmo", "x", {})
    with pytest.raises(Exception, match="invalid agent name"):
        await store.put("agent", "a.b", {})


async def test_names_list_live_manifests_of_one_kind_only(bus: Bus) -> None:
    store = ManifestStore(bus)
    for name in ("a", "b"):
        await store.put("agent", name, AgentSpec(name=name, provider="scripted"))
    await store.delete("agent", "a")
    await store.put("plugin", "p", {"x": 1})
    assert await store.names("agent") == ["b"]
    assert await store.names("plugin") == ["p"]
    assert await store.names("relic") == []
