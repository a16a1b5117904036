"""What `cortex run` shows, as a pure fold over a run's events (no I/O, no clock, no rich).

``RunView.apply(event)`` folds one event; the renderer in ``cortex/cli/run_render.py`` draws the view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cortex.bus.events import Event, Usage

ACTION_STATES = (
    "declared", "waiting", "throttled", "scheduled", "running", "retrying", "timed out",
    "done", "failed", "cancelled",
)
"""Every state an action can be shown in, roughly in lifecycle order."""


@dataclass
class ActionView:
    """One action: what it is, its state, and when it changed."""

    action_id: str
    name: str
    type: str
    mode: str
    turn_id: str
    declared_at: datetime
    state: str = "declared"
    waiting_on: tuple[str, ...] = ()
    attempt: int = 1
    detail: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    latency_ms: float | None = None
    final: bool = False

    @property
    def label(self) -> str:
        """The state in words, e.g. ``waiting on $wiki, $arxiv`` or ``failed: timeout``."""
        if self.state == "waiting" and self.waiting_on:
            return "waiting on " + ", ".join(f"${dep}" for dep in self.waiting_on)
        text = self.state if self.attempt <= 1 else f"{self.state} (attempt {self.attempt})"
        return f"{text}: {self.detail}" if self.detail else text

    def duration_s(self, now: datetime | None = None) -> float | None:
        """Seconds it ran: the worker's latency when finished, else since it started (until ``now``)."""
        if self.latency_ms is not None:
            return self.latency_ms / 1000
        if self.started_at is None:
            return None
        end = self.ended_at or now
        return (end - self.started_at).total_seconds() if end else None


@dataclass
class TurnView:
    """One model turn: its thought and response streams and the actions it declared."""

    turn_id: str
    iteration: int = 0
    thought: str = ""
    response: str = ""
    state: str = "requested"
    action_ids: list[str] = field(default_factory=list)
    usage: Usage | None = None


@dataclass
class RunView:
    """Everything `cortex run` displays, folded from the run's events."""

    run_id: str = ""
    agent: str = ""
    status: str = "pending"
    requested_at: datetime | None = None
    ended_at: datetime | None = None
    turns: dict[str, TurnView] = field(default_factory=dict)
    actions: list[ActionView] = field(default_factory=list)
    answer: str = ""
    usage: Usage | None = None
    error: str = ""
    notes: list[str] = field(default_factory=list)
    events: int = 0

    def action(self, action_id: str) -> ActionView | None:
        """The latest action declared with ``action_id`` (an id may be reused in a later turn)."""
        for view in reversed(self.actions):
            if view.action_id == action_id:
                return view
        return None

    def turn(self, turn_id: str) -> TurnView:
        """The turn ``turn_id``, created on first mention."""
        if turn_id not in self.turns:
            self.turns[turn_id] = TurnView(turn_id, iteration=len(self.turns) + 1)
        return self.turns[turn_id]

    def duration_s(self, now: datetime | None = None) -> float | None:
        """Seconds from ``run.requested`` to the end (or to ``now``)."""
        end = self.ended_at or now
        if self.requested_at is None or end is None:
            return None
        return (end - self.requested_at).total_seconds()

    def apply(self, event: Event) -> "RunView":
        """Fold one event into the view; unknown event types only count."""
        self.events += 1
        handler = _HANDLERS.get(event.type)
        if handler is not None:
            handler(self, event)
        return self


def fold(events: list[Event]) -> RunView:
    """The view after ``events`` (in log order)."""
    view = RunView()
    for event in events:
        view.apply(event)
    return view


# ---- handlers: one per event type ------------------------------------------------


def _requested(view: RunView, event: Event) -> None:
    view.run_id, view.agent, view.requested_at = event.run_id, event.data.agent.name, event.time
    view.status = "requested"


def _started(view: RunView, event: Event) -> None:
    view.status = "running"


def _message(view: RunView, event: Event) -> None:
    view.status, view.ended_at, view.answer = "running", None, ""


def _completed(view: RunView, event: Event) -> None:
    view.status, view.ended_at = "completed", event.time
    view.answer, view.usage = event.data.response, event.data.usage


def _failed(view: RunView, event: Event) -> None:
    view.status, view.ended_at = "failed", event.time
    view.error = f"{event.data.code}: {event.data.reason}"


def _cancelled(view: RunView, event: Event) -> None:
    view.status, view.ended_at, view.error = "cancelled", event.time, event.data.reason


def _turn_requested(view: RunView, event: Event) -> None:
    view.turn(event.data.turn_id).iteration = event.data.iteration


def _turn_state(state: str):
    def handler(view: RunView, event: Event) -> None:
        turn = view.turn(event.data.turn_id)
        turn.state = state
        if state == "completed":
            turn.usage = event.data.usage
        elif state == "failed":
            view.notes.append(f"turn {turn.turn_id} failed: {event.data.code}: {event.data.reason}")
    return handler


def _thought(view: RunView, event: Event) -> None:
    view.turn(event.data.turn_id).thought += event.data.text


def _response(view: RunView, event: Event) -> None:
    view.turn(event.data.turn_id).response += event.data.text


def _parse_error(view: RunView, event: Event) -> None:
    view.notes.append(f"parse error in {event.data.turn_id}: {event.data.code}: {event.data.message}")


def _declared(view: RunView, event: Event) -> None:
    data = event.data
    view.actions.append(ActionView(
        action_id=data.action_id, name=data.name, type=str(data.type), mode=str(data.mode),
        turn_id=data.turn_id, declared_at=event.time,
    ))
    view.turn(data.turn_id).action_ids.append(data.action_id)


def _action_state(state: str):
    def handler(view: RunView, event: Event) -> None:
        action = view.action(event.data.action_id)
        if action is None or action.final:
            return  # an action we never saw declared, or a late message about a finished one
        _move(action, state, event)
    return handler


def _move(action: ActionView, state: str, event: Event) -> None:
    data = event.data
    action.state, action.detail = state, ""
    if state not in ("done", "failed", "cancelled"):
        action.ended_at = action.latency_ms = None
    if state == "waiting":
        action.waiting_on = tuple(data.waiting_on)
    elif state in ("throttled", "timed out"):
        action.detail = data.detail or data.reason
    elif state == "scheduled":
        action.attempt = data.attempt
    elif state == "running":
        action.attempt, action.started_at = data.attempt, event.time
    elif state == "retrying":
        action.attempt, action.detail = data.attempt, f"in {data.delay_s:g}s"
    elif state == "done":
        action.ended_at, action.latency_ms, action.final = event.time, data.latency_ms or None, True
    elif state == "failed":  # a retryable failure may be followed by action.retried
        action.ended_at, action.detail = event.time, f"{data.code}: {data.error}"
        action.latency_ms, action.final = data.latency_ms or None, not data.retryable
    elif state == "cancelled":
        action.ended_at, action.detail, action.final = event.time, data.reason, True


def _progress(view: RunView, event: Event) -> None:
    action = view.action(event.data.action_id)
    if action is not None and not action.final:
        fraction = f" {event.data.fraction:.0%}" if event.data.fraction is not None else ""
        action.detail = f"{event.data.message}{fraction}".strip()


_HANDLERS = {
    "run.requested": _requested,
    "run.started": _started,
    "message.received": _message,
    "run.completed": _completed,
    "run.failed": _failed,
    "run.cancelled": _cancelled,
    "turn.requested": _turn_requested,
    "turn.started": _turn_state("streaming"),
    "turn.completed": _turn_state("completed"),
    "turn.failed": _turn_state("failed"),
    "turn.cancelled": _turn_state("cancelled"),
    "thought.delta": _thought,
    "response.delta": _response,
    "parse.error": _parse_error,
    "action.declared": _declared,
    "action.waiting": _action_state("waiting"),
    "action.throttled": _action_state("throttled"),
    "action.scheduled": _action_state("scheduled"),
    "action.started": _action_state("running"),
    "action.retried": _action_state("retrying"),
    "action.timed_out": _action_state("timed out"),
    "action.completed": _action_state("done"),
    "action.failed": _action_state("failed"),
    "action.cancelled": _action_state("cancelled"),
    "action.progress": _progress,
}
