"""The progressions read model: per run, the ordered steps (messages, turns, thoughts, actions, responses).

An action step follows the kernel's decisions and the pools' reports: ``declared`` →
``waiting`` (on ``waiting_on``) / ``throttled`` → ``scheduled`` → ``started`` →
``completed`` | ``failed`` | ``cancelled`` (with ``retry_wait``, ``timed_out`` and ``denied`` on
the way), each transition kept in ``history`` with its time and reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Union

import msgspec

from cortex.bus.events import (
    ActionCancelled,
    ActionCompleted,
    ActionDeclared,
    ActionDenied,
    ActionFailed,
    ActionProgress,
    ActionRetried,
    ActionScheduled,
    ActionStarted,
    ActionThrottled,
    ActionTimedOut,
    ActionWaiting,
    Event,
    MessageReceived,
    ParseErrorEvent,
    ResponseDelta,
    RunRequested,
    ThoughtDelta,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
    TurnRequested,
    TurnStarted,
)
from cortex.projections.runs import UsageTotals

TEXT_LIMIT = 64_000
"""Characters kept per thought or response step (the log keeps everything)."""
PREVIEW_LIMIT = 2_000
"""Characters kept of an action's params and result."""
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled", "rejected"})


class Transition(msgspec.Struct, frozen=True):
    """One state change of an action."""

    state: str
    at: datetime
    reason: str = ""


class MessageStep(msgspec.Struct, frozen=True, kw_only=True, tag="message", tag_field="kind"):
    """A user message (the first one, or a later chat message)."""

    at: datetime
    text: str


class TurnStep(msgspec.Struct, frozen=True, kw_only=True, tag="turn", tag_field="kind"):
    """A model turn: requested, generating, then completed, failed or cancelled."""

    turn_id: str
    iteration: int = 0
    status: str = "requested"
    model: str = ""
    worker: str = ""
    requested_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    stop_reason: str = ""
    usage: UsageTotals = UsageTotals()
    latency_ms: float = 0.0
    error: str = ""


class TextStep(msgspec.Struct, frozen=True, kw_only=True, tag="text", tag_field="kind"):
    """Streamed text of a turn: ``thought`` or ``response`` (``final`` for the final response)."""

    turn_id: str
    channel: str
    text: str = ""
    final: bool = False
    at: datetime | None = None


class ParseErrorStep(msgspec.Struct, frozen=True, kw_only=True, tag="parse_error", tag_field="kind"):
    """The model wrote malformed protocol output."""

    turn_id: str
    code: str
    message: str
    action_id: str | None = None
    at: datetime | None = None


class ActionStep(msgspec.Struct, frozen=True, kw_only=True, tag="action", tag_field="kind"):
    """One declared action with its current state, timings and history."""

    action_id: str
    turn_id: str
    type: str
    name: str
    mode: str = "async"
    depends_on: tuple[str, ...] = ()
    params: Any = None
    state: str = "declared"
    waiting_on: tuple[str, ...] = ()
    attempt: int = 1
    pool: str = ""
    worker: str = ""
    declared_at: datetime | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    latency_ms: float = 0.0
    reason: str = ""
    error: str = ""
    result: Any = None
    progress: str = ""
    fraction: float | None = None
    history: tuple[Transition, ...] = ()


Step = Union[MessageStep, TurnStep, TextStep, ParseErrorStep, ActionStep]


class ProgressionView(msgspec.Struct, frozen=True, kw_only=True):
    """The ordered steps of one run (key: the run id in ``cortex_progressions``)."""

    run_id: str
    steps: tuple[Step, ...] = ()
    seq: int = 0


def preview(value: Any, limit: int = PREVIEW_LIMIT) -> Any:
    """``value`` itself if its JSON is short, else the start of its JSON text with an ellipsis."""
    if value is None:
        return None
    text = msgspec.json.encode(value).decode()
    return value if len(text) <= limit else text[: limit - 1] + "…"


def compact(view: ProgressionView, limit: int = 1_000) -> ProgressionView:
    """A smaller copy for storage: every text, params and result cut to ``limit`` characters."""
    steps: list[Step] = []
    for step in view.steps:
        if isinstance(step, TextStep) and len(step.text) > limit:
            step = msgspec.structs.replace(step, text=step.text[: limit - 1] + "…")
        elif isinstance(step, ActionStep):
            step = msgspec.structs.replace(step, params=preview(step.params, limit), result=preview(step.result, limit))
        steps.append(step)
    return msgspec.structs.replace(view, steps=tuple(steps))


def fold_progression(view: ProgressionView | None, event: Event, seq: int) -> ProgressionView | None:
    """Apply one run event (stream sequence ``seq``); events already folded or irrelevant change nothing."""
    if not event.run_id or (view is not None and seq <= view.seq):
        return view
    base = view or ProgressionView(run_id=event.run_id)
    handler = _HANDLERS.get(type(event))
    steps = handler(list(base.steps), event) if handler else None
    if steps is None:
        return view
    return ProgressionView(run_id=base.run_id, steps=tuple(steps), seq=seq)


# ---- helpers -------------------------------------------------------------------------


def _find(steps: list[Step], kind: type, **match: Any) -> int | None:
    """Index of the latest step of ``kind`` whose fields equal ``match`` (rejected actions skipped)."""
    for index in range(len(steps) - 1, -1, -1):
        step = steps[index]
        if isinstance(step, kind) and all(getattr(step, k) == v for k, v in match.items()):
            if not (isinstance(step, ActionStep) and step.state == "rejected"):
                return index
    return None


def _action(steps: list[Step], event: Event, state: str | None, why: str = "", **changes: Any) -> list[Step] | None:
    """Update the latest action step with the event's ``action_id``, recording a transition (``why``)."""
    index = _find(steps, ActionStep, action_id=event.data.action_id)  # type: ignore[attr-defined]
    if index is None:
        return None
    step = steps[index]
    assert isinstance(step, ActionStep)
    if state is not None and step.state in TERMINAL and not (step.state == "failed" and state == "retry_wait"):
        # a late report for a finished action: the kernel ignores it, the history keeps it
        late = Transition(state, event.time, f"late, ignored{': ' + why if why else ''}")
        steps[index] = msgspec.structs.replace(step, history=(*step.history, late))
        return steps
    if state is not None:
        changes["state"] = state
        changes["history"] = (*step.history, Transition(state, event.time, why))
        if why:
            changes.setdefault("reason", why)
    steps[index] = msgspec.structs.replace(step, **changes)
    return steps


def _turn(steps: list[Step], turn_id: str, **changes: Any) -> list[Step] | None:
    index = _find(steps, TurnStep, turn_id=turn_id)
    if index is None:
        return None
    steps[index] = msgspec.structs.replace(steps[index], **changes)
    return steps


def _text(steps: list[Step], event: ThoughtDelta | ResponseDelta, channel: str) -> list[Step]:
    """Append streamed text to the last step if it is the same channel of the same turn, else start one."""
    data = event.data
    last = steps[-1] if steps else None
    if isinstance(last, TextStep) and (last.turn_id, last.channel, last.final) == (data.turn_id, channel, data.final):
        steps[-1] = msgspec.structs.replace(last, text=(last.text + data.text)[:TEXT_LIMIT])
    else:
        steps.append(TextStep(turn_id=data.turn_id, channel=channel, text=data.text[:TEXT_LIMIT], final=data.final, at=event.time))
    return steps


# ---- handlers ------------------------------------------------------------------------


def _run_requested(steps: list[Step], event: RunRequested) -> list[Step]:
    return [*steps, MessageStep(at=event.time, text=event.data.message)]


def _message(steps: list[Step], event: MessageReceived) -> list[Step]:
    return [*steps, MessageStep(at=event.time, text=event.data.text)]


def _turn_requested(steps: list[Step], event: TurnRequested) -> list[Step] | None:
    data = event.data
    if _find(steps, TurnStep, turn_id=data.turn_id) is not None:
        return None
    return [*steps, TurnStep(turn_id=data.turn_id, iteration=data.iteration, model=data.model, requested_at=event.time)]


def _turn_started(steps: list[Step], event: TurnStarted) -> list[Step] | None:
    return _turn(steps, event.data.turn_id, status="generating", started_at=event.time, worker=event.data.worker)


def _turn_completed(steps: list[Step], event: TurnCompleted) -> list[Step] | None:
    data = event.data
    usage = UsageTotals(
        data.usage.prompt_tokens, data.usage.completion_tokens, data.usage.prompt_tokens + data.usage.completion_tokens
    )
    return _turn(
        steps, data.turn_id, status="completed", ended_at=event.time, stop_reason=data.stop_reason,
        usage=usage, latency_ms=data.latency_ms,
    )


def _turn_failed(steps: list[Step], event: TurnFailed) -> list[Step] | None:
    data = event.data
    return _turn(steps, data.turn_id, status="failed", ended_at=event.time, error=f"{data.code}: {data.reason}")


def _turn_cancelled(steps: list[Step], event: TurnCancelled) -> list[Step] | None:
    data = event.data
    return _turn(steps, data.turn_id, status="cancelled", ended_at=event.time, error=data.detail or data.reason)


def _parse_error(steps: list[Step], event: ParseErrorEvent) -> list[Step]:
    data = event.data
    return [*steps, ParseErrorStep(turn_id=data.turn_id, code=data.code, message=data.message, action_id=data.action_id, at=event.time)]


def _declared(steps: list[Step], event: ActionDeclared) -> list[Step]:
    data = event.data
    step = ActionStep(
        action_id=data.action_id,
        turn_id=data.turn_id,
        type=str(data.type),
        name=data.name,
        mode=str(data.mode),
        depends_on=tuple(dict.fromkeys((*data.depends_on, *data.refs))),
        params=preview(data.params),
        declared_at=event.time,
        history=(Transition("declared", event.time),),
    )
    return [*steps, step]


def _waiting(steps: list[Step], event: ActionWaiting) -> list[Step] | None:
    return _action(steps, event, "waiting", event.data.reason, waiting_on=event.data.waiting_on)


def _throttled(steps: list[Step], event: ActionThrottled) -> list[Step] | None:
    return _action(steps, event, "throttled", event.data.reason)


def _scheduled(steps: list[Step], event: ActionScheduled) -> list[Step] | None:
    data = event.data
    return _action(
        steps, event, "scheduled", data.reason, attempt=data.attempt, pool=data.pool,
        scheduled_at=event.time, waiting_on=(),
    )


def _started(steps: list[Step], event: ActionStarted) -> list[Step] | None:
    data = event.data
    return _action(steps, event, "started", "", attempt=data.attempt, worker=data.worker, started_at=event.time)


def _progress(steps: list[Step], event: ActionProgress) -> list[Step] | None:
    return _action(steps, event, None, progress=event.data.message, fraction=event.data.fraction)


def _denied(steps: list[Step], event: ActionDenied) -> list[Step] | None:
    data = event.data
    # duplicate and reserved ids never enter the run: the step is rejected and the holder of the id untouched
    state = "rejected" if data.reason in ("duplicate_id", "reserved_id") else "denied"
    index = _find(steps, ActionStep, action_id=data.action_id)
    if index is None:
        return None
    step = steps[index]
    assert isinstance(step, ActionStep)
    steps[index] = msgspec.structs.replace(
        step, state=state, reason=data.reason, error=data.detail,
        ended_at=event.time if state == "rejected" else step.ended_at,
        history=(*step.history, Transition(state, event.time, data.reason)),
    )
    return steps


def _timed_out(steps: list[Step], event: ActionTimedOut) -> list[Step] | None:
    return _action(steps, event, "timed_out", event.data.reason)


def _retried(steps: list[Step], event: ActionRetried) -> list[Step] | None:
    return _action(steps, event, "retry_wait", event.data.reason, attempt=event.data.attempt)


def _completed(steps: list[Step], event: ActionCompleted) -> list[Step] | None:
    data = event.data
    return _action(
        steps, event, "completed", "", ended_at=event.time, latency_ms=data.latency_ms,
        attempt=data.attempt, result=preview(data.result), error="",
    )


def _failed(steps: list[Step], event: ActionFailed) -> list[Step] | None:
    data = event.data
    return _action(
        steps, event, "failed", data.code, ended_at=event.time, latency_ms=data.latency_ms,
        error=data.error,
    )


def _cancelled(steps: list[Step], event: ActionCancelled) -> list[Step] | None:
    data = event.data
    return _action(steps, event, "cancelled", data.reason, ended_at=event.time, error=data.detail)


_HANDLERS: dict[type, Any] = {
    RunRequested: _run_requested,
    MessageReceived: _message,
    TurnRequested: _turn_requested,
    TurnStarted: _turn_started,
    TurnCompleted: _turn_completed,
    TurnFailed: _turn_failed,
    TurnCancelled: _turn_cancelled,
    ThoughtDelta: lambda steps, event: _text(steps, event, "thought"),
    ResponseDelta: lambda steps, event: _text(steps, event, "response"),
    ParseErrorEvent: _parse_error,
    ActionDeclared: _declared,
    ActionWaiting: _waiting,
    ActionThrottled: _throttled,
    ActionScheduled: _scheduled,
    ActionStarted: _started,
    ActionProgress: _progress,
    ActionDenied: _denied,
    ActionTimedOut: _timed_out,
    ActionRetried: _retried,
    ActionCompleted: _completed,
    ActionFailed: _failed,
    ActionCancelled: _cancelled,
}
