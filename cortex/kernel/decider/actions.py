"""The action rules: admit or deny, wait, throttle, schedule, time out, retry, fail, cascade."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cortex.bus.events import (
    ActionCompleted,
    ActionCompletedData,
    ActionDecisionData,
    ActionDeclaredData,
    ActionDenied,
    ActionFailed,
    ActionFailedData,
    ActionRetried,
    ActionScheduled,
    ActionThrottled,
    ActionTimedOut,
    ActionWaiting,
    TimerData,
    TimerSet,
)
from cortex.bus.work import ActionWork
from cortex.errors import UnresolvedReference
from cortex.kernel.decider import reasons
from cortex.kernel.decider.cancel import cancel_action, fail_run, stop_attempt
from cortex.kernel.decider.commands import DispatchWork
from cortex.kernel.decider.ids import timer_id
from cortex.kernel.decider.policy import backoff_s, check_params, check_target, placement
from cortex.kernel.decider.session import Session
from cortex.kernel.decider.state import PENDING, VARS_ID, ActionState, RunState, id_conflict
from cortex.kernel.protocol.refs import resolve


def _refs_text(ids: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"${i}" for i in ids)


# ---- declaration -------------------------------------------------------------------

_ID_CONFLICTS = {
    reasons.RESERVED_ID: '"{vars}" is reserved for $vars; choose another id',
    reasons.DUPLICATE_ID: 'id "{id}" is in use; choose a new id',
}


def declare(s: Session, data: ActionDeclaredData) -> None:
    """Deny a declaration that cannot run, or record what it waits on."""
    action = s.state.actions.get(data.action_id)
    if action is None or action.declared_by != s.trigger.id:  # not admitted: its id is taken
        reason = id_conflict(s.state, data) or reasons.DUPLICATE_ID
        detail = _ID_CONFLICTS[reason].format(id=data.action_id, vars=VARS_ID)
        decision = ActionDecisionData(action_id=data.action_id, reason=reason, detail=detail)
        s.emit(ActionDenied, decision)
        return
    problem = check_target(s.state.spec, action) or _cycle(s.state, action)
    if problem is not None:
        deny(s, action, *problem)
        return
    unmet = tuple(d for d in action.depends if not _done(s.state, d))
    if unmet and not any(_blocked(s.state, d) for d in unmet):
        s.emit(
            ActionWaiting,
            ActionDecisionData(
                action_id=action.action_id,
                reason=reasons.WAITING_ON_DEPENDENCIES,
                detail=f"waiting on {_refs_text(unmet)}",
                waiting_on=unmet,
            ),
        )


def _cycle(state: RunState, action: ActionState) -> tuple[str, str] | None:
    stack, seen = list(action.depends), set()
    while stack:
        dep = stack.pop()
        if dep == action.action_id:
            return (
                reasons.DEPENDENCY_CYCLE,
                f"{action.action_id} depends on itself through {_refs_text(action.depends)}",
            )
        if dep in seen:
            continue
        seen.add(dep)
        other = state.actions.get(dep)
        if other is not None and not other.terminal:
            stack.extend(other.depends)
    return None


def reject_unknown_dependencies(s: Session, turn_id: str) -> None:
    """When a turn ends, deny its actions that wait on ids the model never declared."""
    for action in list(s.state.actions.values()):
        if action.turn_id != turn_id or action.status not in ("declared", "waiting"):
            continue
        missing = [d for d in action.depends if d != VARS_ID and d not in s.state.actions]
        if missing and s.state.running:
            deny(
                s,
                action,
                reasons.UNKNOWN_DEPENDENCY,
                f"no action declared with id {_refs_text(missing)}",
            )


def _done(state: RunState, dep: str) -> bool:
    other = state.actions.get(dep)
    return dep == VARS_ID or (other is not None and other.status == "completed")


def _blocked(state: RunState, dep: str) -> bool:
    other = state.actions.get(dep)
    return other is not None and other.status in ("failed", "cancelled")


# ---- failing -----------------------------------------------------------------------


def deny(s: Session, action: ActionState, reason: str, detail: str) -> None:
    """Refuse an action (a decision with its reason), then fail it with the same code."""
    s.emit(
        ActionDenied, ActionDecisionData(action_id=action.action_id, reason=reason, detail=detail)
    )
    fail(s, action, reason, detail)


def fail(s: Session, action: ActionState, code: str, error: str) -> None:
    """Fail an action for good (the model sees why next turn)."""
    s.emit(
        ActionFailed,
        ActionFailedData(
            action_id=action.action_id, code=code, error=error, attempt=action.attempt
        ),
    )
    failed(s, action.action_id)


def failed(s: Session, action_id: str) -> None:
    """What a final failure does to the run: nothing more, or (fail_fast) the end of it."""
    if s.state.spec.limits.fail_fast and s.state.running:
        action = s.state.actions[action_id]
        fail_run(
            s, reasons.ACTION_FAILED, f"action {action_id} failed: {action.code}: {action.error}"
        )


def worker_failed(s: Session, action_id: str, retryable: bool) -> None:
    """A pool reported a failed attempt: retry it if allowed, else the failure is final."""
    action = s.state.actions[action_id]
    if retryable and action.attempt < placement(s.state.spec, action).max_attempts:
        _retry(s, action, reasons.RETRYABLE_FAILURE, f"{action.code}: {action.error}")
    else:
        failed(s, action_id)


def _retry(s: Session, action: ActionState, reason: str, detail: str) -> None:
    where = placement(s.state.spec, action)
    delay = backoff_s(where.retry, action.attempt)
    nxt = action.attempt + 1
    s.emit(
        ActionRetried,
        ActionDecisionData(
            action_id=action.action_id,
            reason=reason,
            detail=detail,
            attempt=nxt,
            pool=where.pool,
            delay_s=delay,
        ),
    )
    _set_timer(s, action.action_id, reasons.ACTION_RETRY, nxt, delay)


def _set_timer(s: Session, action_id: str, purpose: str, attempt: int, after_s: float) -> None:
    due = s.trigger.time + timedelta(seconds=after_s)
    s.emit(
        TimerSet,
        TimerData(
            timer_id=timer_id(action_id, purpose, attempt),
            due=due,
            purpose=purpose,
            action_id=action_id,
        ),
    )


def timer_fired(s: Session, action_id: str, purpose: str) -> None:
    """A timeout timer fired for the attempt in flight: time it out, then retry or fail it."""
    action = s.state.actions[action_id]
    if purpose != reasons.ACTION_TIMEOUT or action.status != "scheduled":
        return
    where = placement(s.state.spec, action)
    detail = f"no result after {where.timeout_s:g}s (attempt {action.attempt})"
    s.emit(
        ActionTimedOut,
        ActionDecisionData(
            action_id=action_id,
            reason=reasons.TIMEOUT,
            detail=detail,
            attempt=action.attempt,
            pool=where.pool,
        ),
    )
    stop_attempt(s, action, reasons.TIMEOUT)
    idempotent = where.tool is None or where.tool.idempotent
    if idempotent and action.attempt < where.max_attempts:
        _retry(s, action, reasons.TIMEOUT, detail)
    else:
        fail(s, action, reasons.TIMEOUT, detail)


# ---- settling: cascade failures, then schedule what is ready -------------------------


def cascade(s: Session) -> bool:
    """Fail or cancel undecided and waiting actions whose dependencies failed or were cancelled."""
    changed = False
    for action_id in list(s.state.actions):
        if not s.state.running:
            break
        action = s.state.actions[action_id]
        if action.status not in ("declared", "waiting"):
            continue
        dep = next((d for d in action.depends if _blocked(s.state, d)), None)
        if dep is None:
            continue
        if s.state.actions[dep].status == "failed":
            fail(s, action, reasons.DEPENDENCY_FAILED, f"depends on ${dep}, which failed")
        else:
            cancel_action(
                s, action, reasons.DEPENDENCY_CANCELLED, f"depends on ${dep}, which was cancelled"
            )
        changed = True
    return changed


def pump(s: Session) -> bool:
    """Schedule ready actions in declaration order while slots are free; throttle the rest."""
    changed = False
    free = _free_slots(s.state)  # only this loop's schedules take slots; others re-run pump
    for action_id in list(s.state.actions):
        if not s.state.running:
            break
        action = s.state.actions[action_id]
        if action.status not in PENDING:
            continue
        if not all(_done(s.state, d) for d in action.depends):
            continue
        if action.status == "throttled" and free <= 0:
            continue  # checked when it was throttled; nothing changed for it
        params, problem = _prepare(s.state, action)
        if problem is not None:
            deny(s, action, *problem)
        elif action.type == "internal":
            _run_internal(s, action, params)
        elif free > 0:
            _schedule(s, action, params)
            free -= 1
        else:
            limit = s.state.spec.limits.max_parallel_actions
            s.emit(
                ActionThrottled,
                ActionDecisionData(
                    action_id=action_id,
                    reason=reasons.PARALLEL_LIMIT,
                    detail=f"{limit} of {limit} parallel actions running",
                    attempt=action.attempt,
                    pool=placement(s.state.spec, action).pool,
                ),
            )
        changed = True
    return changed


def _prepare(state: RunState, action: ActionState) -> tuple[Any, tuple[str, str] | None]:
    params = action.params
    if action.has_refs:
        try:
            params = resolve(params, state.results())
        except UnresolvedReference as exc:
            return None, (reasons.UNRESOLVED_REFERENCE, str(exc))
    return params, check_params(state.spec, action, params)


def _free_slots(state: RunState) -> int:
    running = sum(1 for a in state.actions.values() if a.status == "scheduled")
    return state.spec.limits.max_parallel_actions - running


def _scheduled_reason(action: ActionState) -> tuple[str, str]:
    if action.status == "throttled":
        return reasons.SLOT_FREED, "a parallel slot is free"
    if action.status == "ready":
        return reasons.RETRY_DUE, f"backoff over; attempt {action.attempt}"
    if action.depends:
        return reasons.DEPENDENCIES_MET, f"dependencies met: {_refs_text(action.depends)}"
    return reasons.DEPENDENCIES_MET, "no dependencies"


def _schedule(s: Session, action: ActionState, params: Any) -> None:
    where = placement(s.state.spec, action)
    reason, detail = _scheduled_reason(action)
    scheduled = s.emit(
        ActionScheduled,
        ActionDecisionData(
            action_id=action.action_id,
            reason=reason,
            detail=detail,
            attempt=action.attempt,
            pool=where.pool,
        ),
    )
    trigger = s.trigger
    work = ActionWork(
        run_id=s.state.run_id,
        causation_id=scheduled.id,
        correlation_id=trigger.correlation_id,
        traceparent=trigger.trace.traceparent if trigger.trace else None,
        action_id=action.action_id,
        type=action.type,
        name=action.name,
        params=params,
        mode=action.mode,
        attempt=action.attempt,
        timeout_s=where.timeout_s,
        tool=where.tool,
    )
    s.command(DispatchWork(pool=where.pool, lane=where.lane, item=work))
    _set_timer(s, action.action_id, reasons.ACTION_TIMEOUT, action.attempt, where.timeout_s)


def _run_internal(s: Session, action: ActionState, params: Any) -> None:
    reason, detail = _scheduled_reason(action)
    s.emit(
        ActionScheduled,
        ActionDecisionData(
            action_id=action.action_id, reason=reason, detail=detail, pool="internal"
        ),
    )
    action = s.state.actions[action.action_id]
    if action.name == "set":
        result: Any = {"name": params["name"], "value": params["value"]}
    else:  # "cancel": the only other internal action check_target admits
        target = s.state.actions.get(params["action_id"])
        if target is None or target.action_id == action.action_id:
            fail(
                s,
                action,
                reasons.UNKNOWN_ACTION,
                f"no other action with id {params['action_id']!r}",
            )
            return
        live = not target.terminal
        if live:
            cancel_action(
                s, target, reasons.CANCEL_REQUESTED, f"cancelled by action {action.action_id}"
            )
        result = {"cancelled": live}
    s.emit(
        ActionCompleted,
        ActionCompletedData(action_id=action.action_id, result=result, attempt=action.attempt),
    )
