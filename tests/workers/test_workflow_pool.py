"""The workflow pool against a real nats-server; the test plays the kernel of parent and child runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cortex.bus.client import Bus
from cortex.bus.events import (
    ActionCompleted,
    ActionCompletedData,
    RunCompleted,
    RunCompletedData,
    RunFailed,
    RunFailedData,
    RunRequested,
)
from cortex.manifests.store import ManifestStore
from cortex.manifests.workflow import WorkflowSpec, load_workflow_manifest, resolve_workflow
from cortex.workers.agent_child import child_run_id
from cortex.workers.workflow_pool import WorkflowPool
from cortex.workers.workflow_render import render_workflow
from tests.workers.test_agent_pool import NOW, end_child, events_of, schedule, wait_for_event

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workflows" / "word_share.yaml"
INPUTS = {"text": "a cat and a dog", "word": "a"}


@pytest.fixture
async def workflow_pool(bus: Bus) -> AsyncIterator[WorkflowPool]:
    """A running workflow pool with the example ``word_share`` applied (resolved)."""
    spec = await resolve_workflow(load_workflow_manifest(EXAMPLE))
    await ManifestStore(bus).put("workflow", "word_share", spec)
    pool, stop = WorkflowPool(bus), asyncio.Event()
    task = asyncio.create_task(pool.serve(stop, concurrency=8))
    try:
        yield pool
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_the_child_replays_the_workflow_and_its_output_completes_the_parent(
    bus: Bus, workflow_pool: WorkflowPool, run_id: str
) -> None:
    item = await schedule(bus, run_id, "share", "workflow", "word_share", INPUTS, "workflow")
    child = child_run_id(item)
    requested = await wait_for_event(bus, child, "run.requested")
    assert isinstance(requested, RunRequested)
    agent = requested.data.agent
    spec = await ManifestStore(bus).get("workflow", "word_share", WorkflowSpec)
    assert agent.provider == "scripted"
    assert agent.provider_options["script"] == [{"text": render_workflow(spec)}]
    assert [t.name for t in agent.tools] == ["text.count", "calc.eval"]
    assert requested.data.variables == INPUTS
    assert (requested.data.parent_run_id, requested.data.parent_action_id) == (run_id, "share")
    assert requested.correlation_id == "corr-1" and requested.causation_id == item.causation_id

    # the child's kernel and tool pool: the steps complete, then the run
    for step, result in (("words", {"words": 5}), ("hits", {"occurrences": 3}), ("share", {"value": 0.6})):
        await bus.publish_event(ActionCompleted(id=f"{child}:{step}", run_id=child, time=NOW,
                                                data=ActionCompletedData(action_id=step, result=result)))
    await end_child(bus, child, RunCompleted, RunCompletedData(response='{"value":0.6}'))
    done = await wait_for_event(bus, run_id, "action.completed")
    assert done.data.result == {"output": {"value": 0.6}, "run_id": child}


async def test_a_failed_workflow_run_fails_the_parent(bus: Bus, workflow_pool: WorkflowPool, run_id: str) -> None:
    item = await schedule(bus, run_id, "share", "workflow", "word_share", INPUTS, "workflow")
    child = child_run_id(item)
    await wait_for_event(bus, child, "run.requested")
    await end_child(bus, child, RunFailed, RunFailedData(code="action_failed", reason="step hits failed"))
    failed = await wait_for_event(bus, run_id, "action.failed")
    assert failed.data.code == "child_run_failed" and "step hits failed" in failed.data.error


@pytest.mark.parametrize(
    ("name", "params", "code", "text"),
    [
        ("word_share", {"text": "x"}, "invalid_params", "'word' is a required property"),
        ("word_share", {"text": "x", "word": ""}, "invalid_params", "inputs/word"),
        ("nothing", {}, "unknown_workflow", "nothing"),
    ],
)
async def test_bad_calls_fail_without_a_child(
    bus: Bus, workflow_pool: WorkflowPool, run_id: str, name: str, params: dict, code: str, text: str
) -> None:
    item = await schedule(bus, run_id, "w", "workflow", name, params, "workflow")
    failed = await wait_for_event(bus, run_id, "action.failed")
    assert failed.data.code == code and text in failed.data.error
    assert await events_of(bus, child_run_id(item)) == []


async def test_a_workflow_stored_unresolved_gets_its_builtin_tools(bus: Bus, run_id: str) -> None:
    manifest = load_workflow_manifest(EXAMPLE)
    await ManifestStore(bus).put("workflow", "word_share", manifest.model_dump(mode="json"))
    pool, stop = WorkflowPool(bus), asyncio.Event()
    task = asyncio.create_task(pool.serve(stop))
    try:
        item = await schedule(bus, run_id, "share", "workflow", "word_share", INPUTS, "workflow")
        requested = await wait_for_event(bus, child_run_id(item), "run.requested")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert [t.name for t in requested.data.agent.tools] == ["text.count", "calc.eval"]
    assert '{"text":"$vars.text"}' in requested.data.agent.provider_options["script"][0]["text"]
