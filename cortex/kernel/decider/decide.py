"""The rules: ``decide(state, event)`` and ``step(state, event)``, pure and deterministic."""

from __future__ import annotations

import re

from collections.abc import Callable
from typing import Any

import msgspec

from cortex.bus.events import (
    ActionDeclared,
    ActionFailed,
    CancelRequested,
    Event,
    RunCompleted,
    RunCompletedData,
    RunStarted,
    RunStartedData,
    TimerFired,
    TurnCompleted,
    TurnFailed,
    TurnRequested,
    TurnRequestedData,
)
from cortex.bus.work import TurnWork
from cortex.errors import UnresolvedReference
from cortex.kernel.decider import reasons
from cortex.kernel.decider.actions import (
    cascade,
    declare,
    pump,
    reject_unknown_dependencies,
    timer_fired,
    worker_failed,
)
from cortex.kernel.decider.cancel import cancel_action, cancel_run, cancel_turn, fail_run
from cortex.kernel.decider.commands import DispatchWork
from cortex.kernel.decider.context import as_text, next_messages
from cortex.kernel.decider.evolve import evolve
from cortex.kernel.decider.ids import turn_id
from cortex.kernel.decider.output import TurnOutput, read_output
from cortex.kernel.decider.session import Output, Session
from cortex.kernel.decider.state import VARS_ID, RunState, TurnState
from cortex.kernel.protocol.refs import REFERENCE, resolve

DECISION_INPUTS: frozenset[str] = frozenset(
    {
        "run.requested",
        "message.received",
        "cancel.requested",
        "turn.completed",
        "turn.failed",
        "action.declared",
        "action.completed",
        "action.failed",
        "action.cancelled",
        "timer.fired",
    }
)
"""The event types the kernel feeds to ``step``; everything else it writes itself or ignores."""

NUDGE = (
    "You wrote no action and no answer. Call a tool with <action>, "
    'or answer with <response final="true">...</response>.'
)


class Decision(msgspec.Struct, frozen=True):
    """The outcome of one step: the new state and the outputs (events and commands) in order."""

    state: RunState
    outputs: tuple[Output, ...]


def step(state: RunState, event: Event) -> Decision:
    """Fold ``event``, decide, fold the decided events: the kernel's whole reaction to a fact."""
    session = _decide(evolve(state, event), event)
    return Decision(session.state, tuple(session.outputs))


def decide(state: RunState, event: Event) -> list[Output]:
    """The outputs for ``event``, given the state with ``event`` already folded in."""
    return _decide(state, event).outputs


def _decide(state: RunState, event: Event) -> Session:
    session = Session(state, event)
    rule = _RULES.get(event.type)
    if rule is not None and state.applied == event.id:  # stale or duplicate inputs decide nothing
        rule(session, event)
    return session


# ---- rules per input ---------------------------------------------------------------


def _on_run_requested(s: Session, event: Event) -> None:
    s.emit(RunStarted, RunStartedData(agent=s.state.spec.name))
    _next_turn(s, ())


def _on_message(s: Session, event: Event) -> None:
    if s.state.status == "completed":  # a follow-up message re-opens a finished chat
        _next_turn(s, ())


def _on_cancel(s: Session, event: CancelRequested) -> None:
    data = event.data
    if data.target == "run":
        cancel_run(s, data.reason)
        return
    if data.target == "turn":
        turn = s.state.turns.get(data.turn_id or "")
        if turn is not None:
            cancel_turn(s, turn, data.reason)
    else:
        action = s.state.actions.get(data.action_id or "")
        if action is not None and not action.terminal:
            cancel_action(s, action, reasons.CANCEL_REQUESTED, data.reason)
    _settle(s)


def _on_turn_completed(s: Session, event: TurnCompleted) -> None:
    reject_unknown_dependencies(s, event.data.turn_id)
    _settle(s)


def _on_turn_failed(s: Session, event: TurnFailed) -> None:
    fail_run(s, reasons.TURN_FAILED, f"{event.data.code}: {event.data.reason}")


def _on_action_declared(s: Session, event: ActionDeclared) -> None:
    declare(s, event.data)
    _settle(s)


def _on_action_failed(s: Session, event: ActionFailed) -> None:
    worker_failed(s, event.data.action_id, event.data.retryable)
    _settle(s)


def _on_timer(s: Session, event: TimerFired) -> None:
    if event.data.action_id:
        timer_fired(s, event.data.action_id, event.data.purpose)
    _settle(s)


def _on_settle(s: Session, event: Event) -> None:
    _settle(s)


_RULES: dict[str, Callable[[Session, Any], None]] = {
    "run.requested": _on_run_requested,
    "message.received": _on_message,
    "cancel.requested": _on_cancel,
    "turn.completed": _on_turn_completed,
    "turn.failed": _on_turn_failed,
    "action.declared": _on_action_declared,
    "action.completed": _on_settle,
    "action.failed": _on_action_failed,
    "action.cancelled": _on_settle,
    "timer.fired": _on_timer,
}


# ---- settling and the run's progress ------------------------------------------------


def _settle(s: Session) -> None:
    """Cascade failures and schedule ready actions until nothing changes, then move the run on."""
    while s.state.running and (cascade(s) or pump(s)):
        pass
    if s.state.running:
        _progress(s)


def _progress(s: Session) -> None:
    """After the turn ended and the results it needs are in: complete the run or ask for a turn."""
    state = s.state
    turn = state.turn
    if turn is None or turn.status == "generating":
        return
    pending = any(a.awaited and not a.terminal for a in state.actions.values())
    output = read_output(turn.output) if turn.status == "completed" else TurnOutput()
    if output.final is not None:
        refs = [m.group(1) for m in REFERENCE.finditer(output.final) if m.group(1) in state.actions]
        if pending or any(not state.actions[r].terminal for r in refs):
            return
        try:
            response = _fill(output.final, state)
        except UnresolvedReference as exc:
            _next_turn(s, (f"your final response could not be completed: {exc}. Answer again.",))
            return
        s.emit(RunCompleted, RunCompletedData(response=response, usage=state.usage))
        return
    if pending:
        return
    quiet = (
        not turn.notes
        and not output.problems
        and all(a.turn_id != turn.turn_id for a in state.actions.values())
    )
    if turn.status == "completed" and quiet and output.text:
        s.emit(RunCompleted, RunCompletedData(response=output.text, usage=state.usage))
        return
    _next_turn(s, _notes(turn, output, quiet))


def _fill(text: str, state: RunState) -> str:
    """Substitute ``$id`` references to the run's actions; other ``$words`` stay as written."""

    def keep_unknown(match: Any) -> str:
        known = not match.group(1) or match.group(1) in state.actions or match.group(1) == VARS_ID
        return match.group(0) if known else "$" + match.group(0)

    return as_text(resolve(REFERENCE.sub(keep_unknown, text), state.results()))


def _notes(turn: TurnState, output: TurnOutput, quiet: bool) -> tuple[str, ...]:
    notes = list(turn.notes)
    if turn.status == "cancelled":
        notes.append(
            f"your turn {turn.turn_id} was cancelled" + (f": {turn.reason}" if turn.reason else "")
        )
    notes += [f"problem in your output: {problem}" for problem in output.problems]
    if quiet and turn.status == "completed":
        notes.append(NUDGE)
    return tuple(notes)


def _next_turn(s: Session, notes: tuple[str, ...]) -> None:
    """Request the next model turn (or fail the run when the iteration budget is spent)."""
    state = s.state
    agent = state.spec
    limit = agent.limits.max_iterations
    if state.turns_since_message >= limit:
        fail_run(
            s,
            reasons.MAX_ITERATIONS,
            f"no final response after {state.turns_since_message} turns (max_iterations={limit})",
        )
        return
    number = state.turn_count + 1
    request = TurnRequestedData(
        turn_id=turn_id(number),
        iteration=number,
        provider=agent.provider,
        model=agent.model,
        messages=next_messages(state, notes),
        tools=agent.tools,
        max_tokens=agent.limits.max_tokens,
        provider_options={**agent.provider_options, "prompt_version": agent.prompt_version},
        next_action_ordinal=next_action_ordinal(state),
    )
    requested = s.emit(TurnRequested, request)
    trigger = s.trigger
    work = TurnWork(
        run_id=state.run_id,
        causation_id=requested.id,
        correlation_id=trigger.correlation_id,
        traceparent=trigger.trace.traceparent if trigger.trace else None,
        request=request,
    )
    s.command(DispatchWork(pool="llm", item=work))


_ORDINAL_ID = re.compile(r"a(\d+)")


def next_action_ordinal(state: RunState) -> int:
    """The next free ``a<n>`` id, so grammar-numbered actions of a later turn never reuse an id."""
    taken = [int(m.group(1)) for aid in state.actions if (m := _ORDINAL_ID.fullmatch(aid))]
    return max(taken, default=0) + 1
