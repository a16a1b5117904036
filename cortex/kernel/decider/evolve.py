"""The pure fold: ``evolve(state, event) -> state`` for every event the decider reads or writes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from cortex.bus.events import (
    ActionCancelled,
    ActionCompleted,
    ActionDeclared,
    ActionDenied,
    ActionFailed,
    ActionRetried,
    ActionScheduled,
    ActionThrottled,
    ActionWaiting,
    CancelRequested,
    Event,
    MessageReceived,
    RunRequested,
    RunStarted,
    TimerFired,
    TimerSet,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
    TurnRequested,
    Usage,
)
from cortex.kernel.decider import reasons
from cortex.kernel.decider.state import ActionState, RunState, TurnState, id_conflict

# A handler returns the new state, or None when the event is stale (nothing changes).
_Handler = Callable[[RunState, Any], RunState | None]


def evolve(state: RunState, event: Event) -> RunState:
    """Fold one event into the run state; stale, duplicate and foreign events change nothing."""
    handler = _HANDLERS.get(event.type)
    if handler is None or event.id in state.seen:
        return state
    if state.run_id and event.run_id != state.run_id:
        return state
    new = handler(state, event)
    if new is None:
        return state
    return msgspec.structs.replace(new, seen=new.seen | {event.id}, applied=event.id)


def replay(events: Iterable[Event]) -> RunState:
    """Fold a run's log (inputs and decisions, in log order) from the empty state."""
    state = RunState()
    for event in events:
        state = evolve(state, event)
    return state


# ---- helpers -------------------------------------------------------------------------


def _set_action(state: RunState, action: ActionState, **changes: Any) -> RunState:
    actions = dict(state.actions)
    actions[action.action_id] = msgspec.structs.replace(action, **changes)
    return msgspec.structs.replace(state, actions=actions)


def _set_turn(state: RunState, turn: TurnState, **changes: Any) -> RunState:
    turns = dict(state.turns)
    turns[turn.turn_id] = msgspec.structs.replace(turn, **changes)
    return msgspec.structs.replace(state, turns=turns)


def _live_action(state: RunState, action_id: str) -> ActionState | None:
    action = state.actions.get(action_id)
    return None if action is None or action.terminal else action


def _generating(state: RunState, turn_id: str) -> TurnState | None:
    turn = state.turns.get(turn_id)
    return turn if turn is not None and turn.status == "generating" else None


# ---- run ---------------------------------------------------------------------------


def _run_requested(state: RunState, event: RunRequested) -> RunState | None:
    if state.status != "new":
        return None
    data = event.data
    return msgspec.structs.replace(
        state,
        run_id=event.run_id,
        status="requested",
        agent=data.agent,
        variables=dict(data.variables),
        inbox=(data.message,),
    )


def _run_started(state: RunState, event: RunStarted) -> RunState | None:
    return msgspec.structs.replace(state, status="running") if state.status == "requested" else None


def _run_ended(status: str) -> _Handler:
    def handler(state: RunState, event: Event) -> RunState | None:
        return msgspec.structs.replace(state, status=status) if state.running else None

    return handler


def _message_received(state: RunState, event: MessageReceived) -> RunState | None:
    if state.status not in ("running", "completed"):
        return None
    return msgspec.structs.replace(
        state, inbox=(*state.inbox, event.data.text), turns_since_message=0
    )


def _cancel_requested(state: RunState, event: CancelRequested) -> RunState | None:
    return state if state.running else None


# ---- turns -------------------------------------------------------------------------


def _turn_requested(state: RunState, event: TurnRequested) -> RunState | None:
    data = event.data
    if data.turn_id in state.turns:
        return None
    turns = {**state.turns, data.turn_id: TurnState(turn_id=data.turn_id, iteration=data.iteration)}
    return msgspec.structs.replace(
        state,
        status="running",
        turns=turns,
        current_turn=data.turn_id,
        turn_count=state.turn_count + 1,
        turns_since_message=state.turns_since_message + 1,
        messages=data.messages,
        inbox=(),
    )


def _turn_completed(state: RunState, event: TurnCompleted) -> RunState | None:
    turn = _generating(state, event.data.turn_id)
    if turn is None:
        return None
    used = event.data.usage
    usage = Usage(
        state.usage.prompt_tokens + used.prompt_tokens,
        state.usage.completion_tokens + used.completion_tokens,
    )
    state = msgspec.structs.replace(state, usage=usage)
    return _set_turn(state, turn, status="completed", output=event.data.output)


def _turn_failed(state: RunState, event: TurnFailed) -> RunState | None:
    turn = _generating(state, event.data.turn_id)
    return None if turn is None else _set_turn(state, turn, status="failed", reason=event.data.code)


def _turn_cancelled(state: RunState, event: TurnCancelled) -> RunState | None:
    turn = _generating(state, event.data.turn_id)
    return (
        None
        if turn is None
        else _set_turn(state, turn, status="cancelled", reason=event.data.detail)
    )


# ---- actions -----------------------------------------------------------------------


def _action_declared(state: RunState, event: ActionDeclared) -> RunState | None:
    data = event.data
    if not state.running or _generating(state, data.turn_id) is None:
        return None
    if id_conflict(state, data) is not None:
        return (
            state  # admitted as a fact; the decider denies it without touching the holder of the id
        )
    action = ActionState(
        action_id=data.action_id,
        turn_id=data.turn_id,
        declared_by=event.id,
        seq=state.action_count + 1,
        type=str(data.type),
        name=data.name,
        mode=str(data.mode),
        params=data.params,
        depends=tuple(dict.fromkeys((*data.depends_on, *data.refs))),
        has_refs=bool(data.refs),
        timeout_s=data.timeout_s,
        retry=data.retry,
    )
    actions = dict(state.actions)
    actions.pop(data.action_id, None)  # a reused id shadows the earlier, finished action
    actions[data.action_id] = action
    return msgspec.structs.replace(state, actions=actions, action_count=action.seq)


def _decision_status(status: str) -> _Handler:
    def handler(state: RunState, event: ActionWaiting | ActionThrottled) -> RunState | None:
        action = _live_action(state, event.data.action_id)
        return None if action is None else _set_action(state, action, status=status)

    return handler


def _action_scheduled(state: RunState, event: ActionScheduled) -> RunState | None:
    action = _live_action(state, event.data.action_id)
    if action is None:
        return None
    return _set_action(state, action, status="scheduled", attempt=event.data.attempt, timer_id=None)


def _action_denied(state: RunState, event: ActionDenied) -> RunState | None:
    if event.data.reason not in (reasons.DUPLICATE_ID, reasons.RESERVED_ID):
        return state  # the action.failed that follows records the outcome
    turn = state.turn
    if turn is None:
        return None
    note = f'action id "{event.data.action_id}" was refused: {event.data.detail}'
    return _set_turn(state, turn, notes=(*turn.notes, note))


def _action_retried(state: RunState, event: ActionRetried) -> RunState | None:
    action = state.actions.get(event.data.action_id)
    if action is None or action.status not in ("scheduled", "failed"):
        return None
    return _set_action(state, action, status="retry_wait", attempt=event.data.attempt)


def _action_completed(state: RunState, event: ActionCompleted) -> RunState | None:
    data = event.data
    action = _live_action(state, data.action_id)
    # A result of the attempt in flight, or a late one of an earlier attempt, is taken.
    if action is None or data.attempt > action.attempt:
        return None
    if action.status != "scheduled" and data.attempt == action.attempt:
        return None
    if action.type == "internal" and action.name == "set" and isinstance(data.result, dict):
        state = msgspec.structs.replace(
            state,
            variables={**state.variables, str(data.result.get("name")): data.result.get("value")},
        )
    return _set_action(
        state,
        action,
        status="completed",
        result=data.result,
        latency_ms=data.latency_ms,
        timer_id=None,
    )


def _action_failed(state: RunState, event: ActionFailed) -> RunState | None:
    data = event.data
    action = _live_action(state, data.action_id)
    # Only the current attempt can fail; a failure of an earlier one is already handled.
    if action is None or action.status == "retry_wait" or data.attempt != action.attempt:
        return None
    return _set_action(
        state,
        action,
        status="failed",
        code=data.code,
        error=data.error,
        latency_ms=data.latency_ms,
        timer_id=None,
    )


def _action_cancelled(state: RunState, event: ActionCancelled) -> RunState | None:
    action = _live_action(state, event.data.action_id)
    if action is None:
        return None
    return _set_action(
        state,
        action,
        status="cancelled",
        code=event.data.reason,
        error=event.data.detail,
        timer_id=None,
    )


# ---- timers ------------------------------------------------------------------------


def _timer_set(state: RunState, event: TimerSet) -> RunState | None:
    action = _live_action(state, event.data.action_id or "")
    return None if action is None else _set_action(state, action, timer_id=event.data.timer_id)


def _timer_fired(state: RunState, event: TimerFired) -> RunState | None:
    action = _live_action(state, event.data.action_id or "")
    if action is None or action.timer_id != event.data.timer_id:
        return None
    if event.data.purpose == reasons.ACTION_RETRY:
        return _set_action(state, action, status="ready", timer_id=None)
    return _set_action(state, action, timer_id=None)


_HANDLERS: dict[str, _Handler] = {
    "run.requested": _run_requested,
    "run.started": _run_started,
    "run.completed": _run_ended("completed"),
    "run.failed": _run_ended("failed"),
    "run.cancelled": _run_ended("cancelled"),
    "message.received": _message_received,
    "cancel.requested": _cancel_requested,
    "turn.requested": _turn_requested,
    "turn.completed": _turn_completed,
    "turn.failed": _turn_failed,
    "turn.cancelled": _turn_cancelled,
    "action.declared": _action_declared,
    "action.waiting": _decision_status("waiting"),
    "action.throttled": _decision_status("throttled"),
    "action.scheduled": _action_scheduled,
    "action.denied": _action_denied,
    "action.timed_out": lambda state, event: state,
    "action.retried": _action_retried,
    "action.completed": _action_completed,
    "action.failed": _action_failed,
    "action.cancelled": _action_cancelled,
    "timer.set": _timer_set,
    "timer.fired": _timer_fired,
}

FOLDED: frozenset[str] = frozenset(_HANDLERS)
"""Every event type that can change a run's state; all others are ignored by the fold."""

__all__ = ["FOLDED", "evolve", "replay"]
