"""Stopping things: one action, a generating turn, or the whole run (failed or cancelled)."""

from __future__ import annotations

from cortex.bus.events import (
    ActionCancelled,
    ActionCancelledData,
    RunCancelled,
    RunCancelledData,
    RunFailed,
    RunFailedData,
    TurnCancelled,
    TurnCancelledData,
)
from cortex.kernel.decider import reasons
from cortex.kernel.decider.commands import CancelWork
from cortex.kernel.decider.policy import placement
from cortex.kernel.decider.session import Session
from cortex.kernel.decider.state import ActionState, TurnState


def cancel_action(s: Session, action: ActionState, reason: str, detail: str = "") -> None:
    """Cancel one live action; an attempt in flight is also told to stop."""
    s.emit(
        ActionCancelled,
        ActionCancelledData(action_id=action.action_id, reason=reason, detail=detail),
    )
    if action.status == "scheduled" and action.type != "internal":
        stop_attempt(s, action, reason)


def stop_attempt(s: Session, action: ActionState, reason: str) -> None:
    """Tell the pool running the action's current attempt to stop it."""
    where = placement(s.state.spec, action)
    s.command(
        CancelWork(
            run_id=s.state.run_id,
            pool=where.pool,
            lane=where.lane,
            target="action",
            target_id=action.action_id,
            attempt=action.attempt,
            reason=reason,
        )
    )


def stop_turn(s: Session, turn: TurnState, reason: str, detail: str = "") -> None:
    """Cancel a generating turn and tell the llm pool to stop it."""
    s.emit(TurnCancelled, TurnCancelledData(turn_id=turn.turn_id, reason=reason, detail=detail))
    s.command(
        CancelWork(
            run_id=s.state.run_id, pool="llm", target="turn", target_id=turn.turn_id, reason=reason
        )
    )


def cancel_turn(s: Session, turn: TurnState, detail: str) -> None:
    """Cancel a turn: its generation if still running, and its live actions."""
    if turn.status == "generating":
        stop_turn(s, turn, reasons.CANCEL_REQUESTED, detail)
    for action in list(s.state.actions.values()):
        if action.turn_id == turn.turn_id and not action.terminal:
            cancel_action(s, action, reasons.TURN_CANCELLED, detail)


def _stop_everything(s: Session, reason: str, detail: str) -> None:
    turn = s.state.turn
    if turn is not None and turn.status == "generating":
        stop_turn(s, turn, reason, detail)
    for action in list(s.state.actions.values()):
        if not action.terminal:
            cancel_action(s, action, reason, detail)


def fail_run(s: Session, code: str, reason: str) -> None:
    """Stop the generating turn and every live action, then fail the run."""
    _stop_everything(s, reasons.RUN_FAILED, reason)
    s.emit(RunFailed, RunFailedData(code=code, reason=reason))


def cancel_run(s: Session, reason: str) -> None:
    """Stop the generating turn and every live action, then cancel the run."""
    _stop_everything(s, reasons.RUN_CANCELLED, reason)
    s.emit(RunCancelled, RunCancelledData(reason=reason))
