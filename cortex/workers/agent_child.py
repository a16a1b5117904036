"""Child runs for the agent and workflow pools: request one, follow it, report its end on the parent.

One action attempt owns one child run. Its id is ``<parent run>-<action>-<attempt>-<tag>``, where
``tag`` is a short digest of the work item's causation id (the ``action.scheduled`` event), so a
redelivered work item finds the same child again, while an action id reused in a later turn gets
a new child. The parent's events of this attempt carry the same tag in their ids, so a re-publish
after a crash is deduplicated.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg

from cortex.aio import cancel_and_wait
from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.events import (
    ActionCompleted,
    ActionCompletedData,
    ActionFailed,
    ActionFailedData,
    ActionProgress,
    ActionProgressData,
    ActionStarted,
    ActionStartedData,
    ActionTimedOut,
    CancelRequested,
    CancelRequestedData,
    Event,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunRequested,
    RunRequestedData,
    TraceContext,
)
from cortex.bus.work import ActionWork
from cortex.workers.base import is_cancellation, keep_alive, make_event, utcnow

ResultBuilder = Callable[[str, RunCompleted], Awaitable[Any]]
"""Turns the child's ``run.completed`` (and its run id) into the parent action's result."""

CHILD_FAILED = "child_run_failed"
CHILD_CANCELLED = "child_run_cancelled"


def attempt_tag(item: ActionWork) -> str:
    """A short digest of the work item's causation id: unique per scheduled attempt."""
    return hashlib.blake2s(item.causation_id.encode(), digest_size=3).hexdigest()


def child_run_id(item: ActionWork) -> str:
    """The deterministic id of the child run an action attempt starts (a valid subject token)."""
    return f"{item.run_id}-{item.action_id}-{item.attempt}-{attempt_tag(item)}"


def outcome_id(item: ActionWork, kind: str) -> str:
    """Deterministic id of one of the parent's events for this attempt (``started``, ``completed``...)."""
    return f"{item.run_id}:{item.action_id}:{item.attempt}:{attempt_tag(item)}:{kind}"


async def fail_action(
    bus: Bus, item: ActionWork, code: str, error: str, *, latency_ms: float = 0.0, retryable: bool = False
) -> None:
    """Publish the parent's ``action.failed`` for this attempt."""
    data = ActionFailedData(
        action_id=item.action_id, code=code, error=error, latency_ms=latency_ms, attempt=item.attempt,
        retryable=retryable,
    )
    await bus.publish_event(make_event(ActionFailed, item, data, event_id=outcome_id(item, "failed")))


async def attempt_settled(bus: Bus, item: ActionWork) -> bool:
    """True if this attempt's outcome (completed or failed, by a worker) is already in the log."""
    async for event, _seq in bus.read(subjects.run_event(item.run_id, "action.>")):
        if isinstance(event, ActionCompleted | ActionFailed) and event.causation_id == item.causation_id:
            return True
    return False


@dataclass(frozen=True)
class ParentStop:
    """Why the worker stops following a child: the attempt was cancelled, timed out or settled."""

    reason: str
    cancel_child: bool


def parent_stop(event: Event, item: ActionWork) -> ParentStop | None:
    """What a parent event means for this attempt (None: nothing)."""
    if isinstance(event, ActionTimedOut):
        if event.data.action_id == item.action_id and event.data.attempt == item.attempt:
            return ParentStop(f"attempt {item.attempt} timed out", cancel_child=True)
        return None
    if isinstance(event, ActionCompleted | ActionFailed):
        if event.causation_id == item.causation_id and event.data.action_id == item.action_id:
            return ParentStop("the attempt already has an outcome", cancel_child=False)
        return None
    if is_cancellation(event, action_id=item.action_id):
        detail = getattr(event.data, "reason", "") or event.type
        return ParentStop(f"cancelled ({event.type}: {detail})", cancel_child=True)
    return None


def stop_in(events: Sequence[Event], item: ActionWork) -> ParentStop | None:
    """The first stop for this attempt among the parent's events after it was scheduled."""
    armed = not any(e.id == item.causation_id for e in events)
    for event in events:
        if event.id == item.causation_id:
            armed = True
        elif armed and (stop := parent_stop(event, item)) is not None:
            return stop
    return None


async def _watch_parent(bus: Bus, item: ActionWork, after_seq: int) -> ParentStop:
    """Wait for a parent event (after stream sequence ``after_seq``) that stops this attempt."""
    async for event, _seq in bus.watch(subjects.run_events(item.run_id), start_seq=after_seq + 1):
        if (stop := parent_stop(event, item)) is not None:
            return stop
    raise asyncio.CancelledError  # pragma: no cover - watch only ends when cancelled


async def child_history(bus: Bus, child: str) -> list[Event]:
    """The lifecycle events (``run.*``) of a child run stored so far."""
    return [event async for event, _seq in bus.read(subjects.run_event(child, "run.>"))]


async def _watch_child(bus: Bus, child: str) -> tuple[RunRequested | None, Event]:
    """Wait for the child's first end (completed, failed or cancelled); also return its request."""
    requested: RunRequested | None = None
    async for event, _seq in bus.watch(subjects.run_event(child, "run.>"), from_start=True):
        if isinstance(event, RunRequested):
            requested = event
        elif isinstance(event, RunCompleted | RunFailed | RunCancelled):
            return requested, event
    raise asyncio.CancelledError  # pragma: no cover - watch only ends when cancelled


def child_request(item: ActionWork, data: RunRequestedData) -> RunRequested:
    """The child's ``run.requested``, linked to the parent by causation and correlation ids."""
    return RunRequested(
        id=f"{child_run_id(item)}:requested",
        run_id=child_run_id(item),
        time=utcnow(),
        causation_id=item.causation_id,
        correlation_id=item.correlation_id or item.run_id,
        trace=TraceContext(item.traceparent) if item.traceparent else None,
        data=data,
    )


async def cancel_child(bus: Bus, item: ActionWork, reason: str) -> None:
    """Ask the child run to stop (``cancel.requested`` on the child's subjects)."""
    child = child_run_id(item)
    event = CancelRequested(
        id=f"{child}:cancel:parent",
        run_id=child,
        time=utcnow(),
        causation_id=item.causation_id,
        correlation_id=item.correlation_id or item.run_id,
        data=CancelRequestedData(
            target="run", reason=f"parent action {item.action_id} of run {item.run_id}: {reason}"
        ),
    )
    await bus.publish_event(event)


async def run_child(
    bus: Bus, item: ActionWork, msg: Msg, request: RunRequestedData, *, worker: str, result: ResultBuilder
) -> None:
    """Run the child run of one action attempt to its end and report it on the parent.

    Redelivery-safe: an attempt that already has an outcome is left alone, and a child already
    requested is followed, not requested again. When the parent's attempt is cancelled or times
    out, the child is cancelled and nothing more is published on the parent (the kernel has
    already decided).
    """
    history = await bus.read_run(item.run_id)
    child = child_run_id(item)
    past = await child_history(bus, child)
    stop = stop_in(history.events, item)
    if stop is not None:
        if stop.cancel_child and past:
            await cancel_child(bus, item, stop.reason)
        return
    if not any(isinstance(e, RunRequested) for e in past):
        await bus.publish_event(child_request(item, request))
    started = ActionStartedData(action_id=item.action_id, attempt=item.attempt, worker=worker)
    progress = ActionProgressData(action_id=item.action_id, message=f"child run {child}")
    await bus.publish_pipelined([
        make_event(ActionStarted, item, started, event_id=outcome_id(item, "started")),
        make_event(ActionProgress, item, progress, event_id=outcome_id(item, "progress-child")),
    ])
    async with keep_alive(msg):
        ended, stopped = await _first(_watch_child(bus, child), _watch_parent(bus, item, history.last_seq))
    if stopped is not None:
        if stopped.cancel_child:
            await cancel_child(bus, item, stopped.reason)
        return
    assert ended is not None
    requested, end = ended
    latency_ms = (end.time - requested.time).total_seconds() * 1000 if requested else 0.0
    if isinstance(end, RunCompleted):
        data = ActionCompletedData(
            action_id=item.action_id, result=await result(child, end), latency_ms=latency_ms, attempt=item.attempt
        )
        await bus.publish_event(make_event(ActionCompleted, item, data, event_id=outcome_id(item, "completed")))
    elif isinstance(end, RunFailed):
        error = f"child run {child} failed ({end.data.code}): {end.data.reason}"
        await fail_action(bus, item, CHILD_FAILED, error, latency_ms=latency_ms)
    else:
        error = f"child run {child} was cancelled: {end.data.reason}"
        await fail_action(bus, item, CHILD_CANCELLED, error, latency_ms=latency_ms)


async def _first(
    child: Awaitable[tuple[RunRequested | None, Event]], parent: Awaitable[ParentStop]
) -> tuple[tuple[RunRequested | None, Event] | None, ParentStop | None]:
    """Race the child's end against the parent's stop; the child's end wins a tie."""
    child_task = asyncio.ensure_future(child)
    parent_task = asyncio.ensure_future(parent)
    try:
        await asyncio.wait({child_task, parent_task}, return_when=asyncio.FIRST_COMPLETED)
        if child_task.done():
            return child_task.result(), None
        return None, parent_task.result()
    finally:
        await asyncio.gather(cancel_and_wait(child_task), cancel_and_wait(parent_task))
