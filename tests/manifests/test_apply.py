"""``apply`` stores resolved manifests in KV and announces them; the folder watch applies changes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import pytest

from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.events import ManifestApplied
from cortex.errors import CortexError, ManifestError
from cortex.manifests.apply import ApplyResult, apply_manifests
from cortex.manifests.store import ManifestStore
from cortex.manifests.watch import watch_and_apply
from tests.manifests.conftest import Write

AGENT = "kind: agent\nname: helper\nprovider: scripted\nmodel: m1\ntools: [calc.eval]\ncontext_feeds:\n  - {name: news, source: 'https://example.org/feed'}\n"


async def applied_events(bus: Bus) -> list[ManifestApplied]:
    """Every manifest.applied event stored so far."""
    return [e async for e, _ in bus.read(subjects.system_event("manifest.applied"), stream=subjects.SYSTEM_STREAM)]


async def test_apply_stores_the_resolved_spec_and_announces_changes_only(bus: Bus, write: Write, tmp_path: Path) -> None:
    write("helper.yaml", AGENT)
    write("plugins/ws.yaml", "name: ws\nversion: '1'\nruntime: subprocess\ncommand: [x]\ntools: [{name: t}]\n")
    first = await apply_manifests(bus, tmp_path)
    assert sorted((r.kind, r.name, r.change) for r in first) == [("agent", "helper", "created"), ("plugin", "ws", "created")]

    store = ManifestStore(bus)
    spec = await store.get_agent("helper")  # what every kernel reads: an AgentSpec
    assert (spec.model, [t.name for t in spec.tools]) == ("m1", ["calc.eval"])
    raw = await store.get("agent", "helper", dict)
    assert raw["context_feeds"][0]["source"] == "https://example.org/feed"  # feeds are kept beside the spec
    assert (await store.get("plugin", "ws", dict))["runtime"] == "subprocess"

    again = await apply_manifests(bus, tmp_path)
    assert {r.change for r in again} == {"unchanged"}
    write("helper.yaml", AGENT.replace("m1", "m2"))
    third = {r.name: r for r in await apply_manifests(bus, tmp_path)}
    assert third["helper"].change == "updated" and third["helper"].revision > first[0].revision
    assert (await store.get_agent("helper")).model == "m2"

    events = await applied_events(bus)
    assert [(e.data.kind, e.data.name) for e in events] == [("agent", "helper"), ("plugin", "ws"), ("agent", "helper")]
    assert events[-1].data.revision == third["helper"].revision and events[-1].data.digest == third["helper"].digest


async def test_nothing_is_stored_when_any_manifest_is_invalid(bus: Bus, write: Write, tmp_path: Path) -> None:
    write("good.yaml", AGENT)
    write("bad.yaml", "kind: agent\nname: bad\ntools: [calc.nothing]\n")
    with pytest.raises(ManifestError, match=r"bad\.yaml:3: tools\.0: calc\.nothing match no tool"):
        await apply_manifests(bus, tmp_path)
    assert await ManifestStore(bus).names("agent") == []
    assert await applied_events(bus) == []


async def until(condition: Callable[[], Awaitable[object]], what: str, timeout_s: float = 10.0) -> None:
    """Poll ``condition`` until it is true, failing after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def writing(write: Write, name: str, text: str, done: Callable[[], Awaitable[bool]]) -> Callable[[], Awaitable[bool]]:
    """A condition that (re)writes the file until ``done``: the watcher may not be watching yet at first."""

    async def check() -> bool:
        if await done():
            return True
        write(name, text)
        return False

    return check


async def test_the_watch_applies_the_folder_and_each_change(bus: Bus, write: Write, tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    write("manifests/helper.yaml", AGENT)
    outcomes: list[list[ApplyResult] | CortexError] = []
    stop = asyncio.Event()
    task = asyncio.create_task(watch_and_apply(bus, folder, stop, debounce_ms=50, report=outcomes.append))
    store = ManifestStore(bus)

    async def model_of(name: str) -> str | None:
        return (await store.get_agent(name)).model if name in await store.names("agent") else None

    async def refused() -> bool:
        return any(isinstance(o, ManifestError) for o in outcomes)

    second = AGENT.replace("helper", "second")
    try:
        await until(lambda: model_of("helper"), "the first apply")
        await until(writing(write, "manifests/second.yaml", second, lambda: _is(model_of("second"), "m1")), "a new file")
        broken = "kind: agent\nname: second\nlimits: {max_tokens: 0}\n"
        await until(writing(write, "manifests/second.yaml", broken, refused), "the error report")
        assert await model_of("second") == "m1"  # an invalid folder applies nothing
        fixed = second.replace("m1", "m3")
        await until(writing(write, "manifests/second.yaml", fixed, lambda: _is(model_of("second"), "m3")), "the fix")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    changes = [r.change for o in outcomes if isinstance(o, list) for r in o if r.name == "second"]
    assert changes[0] == "created" and "updated" in changes


async def _is(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def test_the_watch_refuses_a_missing_folder(bus: Bus, tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not a folder"):
        await watch_and_apply(bus, tmp_path / "none", asyncio.Event())


def test_stored_values_are_plain_json() -> None:
    # the digest is over key-sorted JSON, so equal values always get the same digest
    from cortex.manifests.apply import digest

    assert digest({"b": 1, "a": [1, 2]}) == digest(msgspec.json.decode(b'{"a": [1, 2], "b": 1}'))
    assert digest({"a": 1}) != digest({"a": 2})


async def test_workflows_and_relics_are_applied_as_their_specs(bus: Bus, write: Write, tmp_path: Path) -> None:
    from cortex.manifests.relic import RelicSpec
    from cortex.manifests.workflow import WorkflowSpec

    write("flows/count.yaml", """
        kind: workflow
        name: count
        inputs: {type: object, properties: {text: {type: string}}}
        steps:
          - {id: words, type: tool, name: text.count, params: {text: $input.text}}
        output: $words
    """)
    write("relics/notes.yaml", "kind: relic\nname: notes\ncommand: [python3, server.py]\ncwd: .\nendpoints:\n  list: {path: /notes}\n")
    write("agents/a.yaml", "kind: agent\nname: a\nworkflows: [count]\n")
    results = await apply_manifests(bus, tmp_path)
    assert sorted((r.kind, r.name) for r in results) == [("agent", "a"), ("relic", "notes"), ("workflow", "count")]
    store = ManifestStore(bus)
    flow = await store.get("workflow", "count", WorkflowSpec)
    assert [t.name for t in flow.tools] == ["text.count"] and flow.output == "$words"
    relic = await store.get("relic", "notes", RelicSpec)
    assert relic.cwd == str(tmp_path / "relics") and relic.endpoints["list"].path == "/notes"
    assert (await store.get_agent("a")).workflows == ("count",)
