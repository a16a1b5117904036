"""The agent pool against a real nats-server; the test plays the kernel of both parent and child runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import Any

import pytest

from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.events import (
    ActionCancelled,
    ActionCancelledData,
    ActionDecisionData,
    ActionScheduled,
    ActionTimedOut,
    CancelRequested,
    CancelRequestedData,
    Event,
    RunCancelled,
    RunCancelledData,
    RunCompleted,
    RunCompletedData,
    RunFailed,
    RunFailedData,
    RunRequested,
    RunRequestedData,
)
from cortex.bus.work import ActionWork
from cortex.manifests.store import ManifestStore
from cortex.specs import AgentSpec
from cortex.workers.agent_child import child_run_id
from cortex.workers.agent_pool import AgentPool

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


async def wait_for_event(
    bus: Bus, run_id: str, event_type: str, where: Callable[[Event], bool] = lambda e: True,
    timeout_s: float = 10.0,
) -> Event:
    """The first event of ``event_type`` on the run (past or future) that satisfies ``where``."""

    async def first() -> Event:
        async for event, _seq in bus.watch(subjects.run_events(run_id), from_start=True):
            if event.type == event_type and where(event):
                return event
        raise AssertionError("watch ended")

    try:
        return await asyncio.wait_for(first(), timeout_s)
    except TimeoutError:
        raise AssertionError(f"no {event_type} on run {run_id} within {timeout_s}s") from None


async def events_of(bus: Bus, run_id: str, event_type: str | None = None) -> list[Event]:
    """The run's stored events (of one type if given)."""
    history = await bus.read_run(run_id)
    return [e for e in history.events if event_type is None or e.type == event_type]


async def schedule(bus: Bus, run_id: str, action_id: str, type_: str, name: str, params: Any,
                   pool: str, attempt: int = 1) -> ActionWork:
    """Play the kernel: publish ``action.scheduled`` and dispatch the work item it causes."""
    scheduled = ActionScheduled(
        id=f"{run_id}:k:{action_id}:{attempt}", run_id=run_id, time=NOW, correlation_id="corr-1",
        data=ActionDecisionData(action_id=action_id, reason="dependencies_met", attempt=attempt, pool=pool),
    )
    await bus.publish_event(scheduled)
    item = ActionWork(
        run_id=run_id, causation_id=scheduled.id, correlation_id="corr-1", action_id=action_id,
        type=type_, name=name, params=params, attempt=attempt, timeout_s=30.0,
    )
    await bus.publish_work(pool, item)
    return item


async def end_child(bus: Bus, child: str, event_cls: type[Event], data: Any) -> None:
    """Play the child's kernel: end the child run."""
    await bus.publish_event(event_cls(id=f"{child}:end", run_id=child, time=NOW, data=data))


@pytest.fixture
async def agent_pool(bus: Bus) -> AsyncIterator[AgentPool]:
    """A running agent pool with one applied agent, ``helper``."""
    await ManifestStore(bus).put("agent", "helper", AgentSpec(name="helper", system_prompt="help"))
    pool = AgentPool(bus)
    stop = asyncio.Event()
    task = asyncio.create_task(pool.serve(stop, concurrency=8))
    try:
        yield pool
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_child_run_is_linked_and_its_response_completes_the_parent(
    bus: Bus, agent_pool: AgentPool, run_id: str
) -> None:
    item = await schedule(bus, run_id, "ask", "agent", "helper",
                          {"message": "what is 2+2?", "variables": {"x": 1}}, "agent")
    child = child_run_id(item)
    requested = await wait_for_event(bus, child, "run.requested")
    assert isinstance(requested, RunRequested)
    assert requested.data.agent.name == "helper"
    assert requested.data.message == "what is 2+2?"
    assert requested.data.variables == {"x": 1}
    assert (requested.data.parent_run_id, requested.data.parent_action_id) == (run_id, "ask")
    assert requested.causation_id == item.causation_id
    assert requested.correlation_id == "corr-1"
    started = await wait_for_event(bus, run_id, "action.started")
    assert started.data.worker == agent_pool.worker

    await end_child(bus, child, RunCompleted, RunCompletedData(response="4"))
    done = await wait_for_event(bus, run_id, "action.completed")
    assert done.data.action_id == "ask"
    assert done.data.result == {"response": "4", "run_id": child}
    assert done.causation_id == item.causation_id and done.correlation_id == "corr-1"
    progress = await events_of(bus, run_id, "action.progress")
    assert [p.data.message for p in progress] == [f"child run {child}"]


async def test_a_string_param_is_the_message(bus: Bus, agent_pool: AgentPool, run_id: str) -> None:
    item = await schedule(bus, run_id, "ask", "agent", "helper", "plain text", "agent")
    requested = await wait_for_event(bus, child_run_id(item), "run.requested")
    assert requested.data.message == "plain text"


@pytest.mark.parametrize(
    ("name", "params", "code"),
    [("nobody", {"message": "hi"}, "unknown_agent"), ("helper", {"text": "hi"}, "invalid_params")],
)
async def test_bad_actions_fail_without_a_child(
    bus: Bus, agent_pool: AgentPool, run_id: str, name: str, params: Any, code: str
) -> None:
    item = await schedule(bus, run_id, "ask", "agent", name, params, "agent")
    failed = await wait_for_event(bus, run_id, "action.failed")
    assert failed.data.code == code and failed.data.retryable is False
    if code == "unknown_agent":
        assert "nobody" in failed.data.error
    assert await events_of(bus, child_run_id(item)) == []


@pytest.mark.parametrize(
    ("end_cls", "data", "code", "text"),
    [
        (RunFailed, RunFailedData(code="max_iterations", reason="no answer"), "child_run_failed", "max_iterations"),
        (RunCancelled, RunCancelledData(reason="operator"), "child_run_cancelled", "operator"),
    ],
)
async def test_a_child_that_does_not_complete_fails_the_parent(
    bus: Bus, agent_pool: AgentPool, run_id: str, end_cls: type[Event], data: Any, code: str, text: str
) -> None:
    item = await schedule(bus, run_id, "ask", "agent", "helper", {"message": "hi"}, "agent")
    child = child_run_id(item)
    await wait_for_event(bus, child, "run.requested")
    await end_child(bus, child, end_cls, data)
    failed = await wait_for_event(bus, run_id, "action.failed")
    assert failed.data.code == code and text in failed.data.error and child in failed.data.error


@pytest.mark.parametrize("how", ["action_cancelled", "run_cancel_requested", "timed_out"])
async def test_stopping_the_parent_cancels_the_child(
    bus: Bus, agent_pool: AgentPool, run_id: str, how: str
) -> None:
    item = await schedule(bus, run_id, "ask", "agent", "helper", {"message": "hi"}, "agent")
    child = child_run_id(item)
    await wait_for_event(bus, run_id, "action.started")
    if how == "action_cancelled":
        stop: Event = ActionCancelled(id=f"{run_id}:c", run_id=run_id, time=NOW,
                                      data=ActionCancelledData(action_id="ask", reason="cancel_requested"))
    elif how == "timed_out":
        stop = ActionTimedOut(id=f"{run_id}:t", run_id=run_id, time=NOW,
                              data=ActionDecisionData(action_id="ask", reason="timeout", attempt=1))
    else:
        stop = CancelRequested(id=f"{run_id}:c", run_id=run_id, time=NOW,
                               data=CancelRequestedData(target="run", reason="user said stop"))
    await bus.publish_event(stop)
    cancel = await wait_for_event(bus, child, "cancel.requested")
    assert cancel.data.target == "run" and run_id in cancel.data.reason
    assert cancel.causation_id == item.causation_id
    # the pool is done with the attempt: the consumer acked it, and nothing settled the parent
    await _until_acked(bus)
    assert await events_of(bus, run_id, "action.completed") == []
    assert await events_of(bus, run_id, "action.failed") == []


async def test_a_cancellation_of_another_action_or_attempt_is_ignored(
    bus: Bus, agent_pool: AgentPool, run_id: str
) -> None:
    item = await schedule(bus, run_id, "ask", "agent", "helper", {"message": "hi"}, "agent", attempt=2)
    child = child_run_id(item)
    await wait_for_event(bus, run_id, "action.started")
    await bus.publish_event(ActionCancelled(id=f"{run_id}:c", run_id=run_id, time=NOW,
                                            data=ActionCancelledData(action_id="other", reason="x")))
    await bus.publish_event(ActionTimedOut(id=f"{run_id}:t", run_id=run_id, time=NOW,
                                           data=ActionDecisionData(action_id="ask", reason="timeout", attempt=1)))
    await end_child(bus, child, RunCompleted, RunCompletedData(response="fine"))
    done = await wait_for_event(bus, run_id, "action.completed")
    assert done.data.result["response"] == "fine" and done.data.attempt == 2
    assert await events_of(bus, child, "cancel.requested") == []


async def test_an_earlier_cancellation_of_a_reused_action_id_does_not_stop_the_new_one(
    bus: Bus, agent_pool: AgentPool, run_id: str
) -> None:
    await bus.publish_event(ActionCancelled(id=f"{run_id}:old", run_id=run_id, time=NOW,
                                            data=ActionCancelledData(action_id="ask", reason="turn 1")))
    item = await schedule(bus, run_id, "ask", "agent", "helper", {"message": "again"}, "agent")
    child = child_run_id(item)
    await wait_for_event(bus, child, "run.requested")
    await end_child(bus, child, RunCompleted, RunCompletedData(response="second"))
    done = await wait_for_event(bus, run_id, "action.completed")
    assert done.data.result["response"] == "second"


async def test_redelivery_resumes_the_existing_child_without_requesting_it_again(
    bus: Bus, run_id: str
) -> None:
    await ManifestStore(bus).put("agent", "helper", AgentSpec(name="helper"))
    item = ActionWork(run_id=run_id, causation_id=f"{run_id}:k:1", action_id="ask", type="agent",
                      name="helper", params={"message": "hi"})
    child = child_run_id(item)
    # a crashed worker had requested the child (under another event id, so dedupe cannot hide a repeat)
    await bus.publish_event(RunRequested(
        id="crashed-worker-request", run_id=child, time=NOW,
        data=RunRequestedData(agent=AgentSpec(name="helper"), message="hi"),
    ))
    await end_child(bus, child, RunCompleted, RunCompletedData(response="done before"))
    pool, stop = AgentPool(bus), asyncio.Event()
    await bus.publish_work("agent", item)
    task = asyncio.create_task(pool.serve(stop))
    try:
        done = await wait_for_event(bus, run_id, "action.completed")
    finally:
        stop.set()
        await task
    assert done.data.result == {"response": "done before", "run_id": child}
    assert len(await events_of(bus, child, "run.requested")) == 1


async def test_a_stopping_worker_hands_the_child_to_another(bus: Bus, run_id: str) -> None:
    await ManifestStore(bus).put("agent", "helper", AgentSpec(name="helper"))
    first, stop_first = AgentPool(bus), asyncio.Event()
    first_task = asyncio.create_task(first.serve(stop_first))
    item = await schedule(bus, run_id, "ask", "agent", "helper", {"message": "hi"}, "agent")
    child = child_run_id(item)
    await wait_for_event(bus, child, "run.requested")
    stop_first.set()
    await asyncio.wait_for(first_task, 10)

    second, stop_second = AgentPool(bus), asyncio.Event()
    second_task = asyncio.create_task(second.serve(stop_second))
    try:
        await end_child(bus, child, RunCompleted, RunCompletedData(response="handed over"))
        done = await wait_for_event(bus, run_id, "action.completed")
    finally:
        stop_second.set()
        await second_task
    assert done.data.result["response"] == "handed over"
    assert len(await events_of(bus, child, "run.requested")) == 1


async def _until_acked(bus: Bus, timeout_s: float = 10.0) -> None:
    """Wait until the agent pool's consumer has nothing pending or unacknowledged."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        info = await bus.js.consumer_info(subjects.WORK_STREAM, "pool-agent")
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        if loop.time() > deadline:
            raise AssertionError(f"work not acked: {info.num_pending} pending, {info.num_ack_pending} unacked")
        await asyncio.sleep(0.02)
