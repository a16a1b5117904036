"""Sub-agents and workflows end to end: a real kernel, ``cortex worker llm`` (scripted models) and
``cortex worker tool`` processes, and the agent and workflow pools."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cortex.bus.client import Bus
from cortex.bus.events import (
    CancelRequested,
    CancelRequestedData,
    RunCancelled,
    RunCompleted,
    RunRequested,
    RunRequestedData,
)
from cortex.kernel.service import Kernel
from cortex.manifests.store import ManifestStore
from cortex.manifests.workflow import WorkflowSpec, WorkflowStep, load_workflow_manifest, resolve_workflow
from cortex.specs import AgentSpec
from cortex.workers.agent_pool import AgentPool
from cortex.workers.workflow_pool import WorkflowPool
from tests.workers.test_agent_pool import NOW, events_of, wait_for_event


def scripted(name: str, *rules: dict[str, Any], token_delay_s: float = 0.0, **fields: Any) -> AgentSpec:
    """An agent whose model is the scripted provider."""
    options = {"script": list(rules), "token_delay_s": token_delay_s}
    return AgentSpec(name=name, provider="scripted", provider_options=options, **fields)


@contextlib.asynccontextmanager
async def stack(bus: Bus, workers: tuple[str, ...] = ("llm",)) -> AsyncIterator[None]:
    """A kernel (own connection), agent and workflow pools, and ``cortex worker <pool>`` processes."""
    env = {**os.environ, "CORTEX_NATS_URL": bus.url}
    processes = [subprocess.Popen([sys.executable, "-m", "cortex.cli.main", "worker", pool], env=env)
                 for pool in workers]
    kernel_bus = await Bus.connect(bus.url, name="kernel")
    kernel = Kernel(kernel_bus)
    kernel_task = asyncio.create_task(kernel.run())
    stop = asyncio.Event()
    pools = [asyncio.create_task(p.serve(stop)) for p in (AgentPool(bus), WorkflowPool(bus))]
    try:
        await asyncio.wait_for(kernel.ready.wait(), 10)
        yield
    finally:
        for process in processes:
            process.terminate()
        stop.set()
        kernel.stop()
        await asyncio.wait_for(asyncio.gather(*pools, kernel_task), 30)
        await kernel_bus.close()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


async def start_run(bus: Bus, run_id: str, agent: AgentSpec, message: str = "go") -> None:
    """Publish run.requested, as the API would."""
    await bus.publish_event(RunRequested(
        id=f"{run_id}:requested", run_id=run_id, time=NOW, correlation_id=f"corr-{run_id}",
        data=RunRequestedData(agent=agent, message=message),
    ))


WORD_SHARE = Path(__file__).resolve().parents[2] / "examples" / "workflows" / "word_share.yaml"
HELPER = scripted("helper", {"text": '<response final="true">42</response>'})


async def test_a_sub_agent_answers_its_parent(bus: Bus, run_id: str) -> None:
    await ManifestStore(bus).put("agent", "helper", HELPER)
    parent = scripted(
        "boss",
        {"after_result": "h", "text": '<response final="true">The helper says $h.response</response>'},
        {"text": '<action type="agent" name="helper" id="h">{"message": "what is 6*7?"}</action>'},
        agents=("helper",),
    )
    async with stack(bus):
        await start_run(bus, run_id, parent)
        done = await wait_for_event(bus, run_id, "run.completed", timeout_s=30)
    assert isinstance(done, RunCompleted) and done.data.response == "The helper says 42"
    result = (await events_of(bus, run_id, "action.completed"))[0].data.result
    child = result["run_id"]
    requested = (await events_of(bus, child, "run.requested"))[0]
    assert requested.data.parent_run_id == run_id and requested.data.message == "what is 6*7?"
    assert requested.correlation_id == f"corr-{run_id}"
    assert (await events_of(bus, child, "run.completed"))[0].correlation_id == f"corr-{run_id}"


async def test_cancelling_the_parent_cancels_the_child_run(bus: Bus, run_id: str) -> None:
    slow = scripted("slow", {"text": '<response final="true">' + "word " * 200 + "</response>"},
                    token_delay_s=0.05)
    await ManifestStore(bus).put("agent", "slow", slow)
    parent = scripted("boss", {"text": '<action type="agent" name="slow" id="s">{"message": "take your time"}</action>'},
                      agents=("slow",))
    async with stack(bus):
        await start_run(bus, run_id, parent)
        progress = await wait_for_event(bus, run_id, "action.progress", timeout_s=30)
        child = progress.data.message.removeprefix("child run ")
        await wait_for_event(bus, child, "turn.started", timeout_s=30)
        await bus.publish_event(CancelRequested(id=f"{run_id}:cancel", run_id=run_id, time=NOW,
                                                data=CancelRequestedData(target="run", reason="user gave up")))
        assert isinstance(await wait_for_event(bus, run_id, "run.cancelled", timeout_s=30), RunCancelled)
        cancelled = await wait_for_event(bus, child, "run.cancelled", timeout_s=30)
    assert "parent action s" in cancelled.data.reason
    assert await events_of(bus, child, "run.completed") == []


@pytest.mark.parametrize(("output", "final", "expected"), [
    ("$b", "$w.output.response", "42"),
    ("first $a.response, then $b.response", "$w.output", "first 42, then 42"),
])
async def test_a_workflow_runs_its_steps_through_the_kernel(
    bus: Bus, run_id: str, output: str, final: str, expected: str
) -> None:
    store = ManifestStore(bus)
    await store.put("agent", "helper", HELPER)
    await store.put("workflow", "pair", WorkflowSpec(
        name="pair", inputs={"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        steps=(WorkflowStep(id="a", type="agent", name="helper", params={"message": "$input.q"}),
               WorkflowStep(id="b", type="agent", name="helper", params={"message": "again: $a.response"})),
        output=output,
    ))
    parent = scripted(
        "boss",
        {"after_result": "w", "text": f'<response final="true">{final}</response>'},
        {"text": '<action type="workflow" name="pair" id="w">{"q": "what is 6*7?"}</action>'},
        workflows=("pair",),
    )
    async with stack(bus):
        await start_run(bus, run_id, parent)
        done = await wait_for_event(bus, run_id, "run.completed", timeout_s=60)
    assert done.data.response == expected
    workflow_run = (await events_of(bus, run_id, "action.completed"))[0].data.result["run_id"]
    steps = await events_of(bus, workflow_run, "action.completed")
    assert [s.data.action_id for s in steps] == ["a", "b"]
    second = (await events_of(bus, steps[1].data.result["run_id"], "run.requested"))[0]
    assert second.data.message == "again: 42"


async def test_a_workflow_of_tools_runs_on_the_tool_pool(bus: Bus, run_id: str) -> None:
    spec = await resolve_workflow(load_workflow_manifest(WORD_SHARE))
    await ManifestStore(bus).put("workflow", spec.name, spec)
    text, word = "a cat and a dog", "a"
    parent = scripted(
        "boss",
        {"after_result": "w", "text": '<response final="true">share: $w.output.value</response>'},
        {"text": f'<action type="workflow" name="word_share" id="w">{{"text": "{text}", "word": "{word}"}}</action>'},
        workflows=("word_share",),
    )
    async with stack(bus, ("llm", "tool")):
        await start_run(bus, run_id, parent)
        done = await wait_for_event(bus, run_id, "run.completed", timeout_s=60)
    assert done.data.response == f"share: {round(text.count(word) / len(text.split()), 4)}"
    child = (await events_of(bus, run_id, "action.completed"))[0].data.result["run_id"]
    steps = {e.data.action_id: e.data.result for e in await events_of(bus, child, "action.completed")}
    assert steps["words"]["words"] == 5 and steps["hits"]["occurrences"] == text.count(word)
