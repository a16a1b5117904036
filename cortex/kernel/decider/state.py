"""The state of one run as the decider sees it: immutable structs, replaced on every change."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from cortex.bus.events import ActionDeclaredData, ChatMessage, Usage
from cortex.errors import DecisionError
from cortex.kernel.decider import reasons
from cortex.specs import AgentSpec

RunStatus = Literal["new", "requested", "running", "completed", "failed", "cancelled"]
TurnStatus = Literal["generating", "completed", "failed", "cancelled"]
ActionStatus = Literal[
    "declared",  # admitted, not decided yet (only inside one decision)
    "waiting",  # on dependencies
    "throttled",  # ready, but no free slot
    "ready",  # a retry backoff ended; to be scheduled
    "scheduled",  # dispatched to its pool (an attempt in flight)
    "retry_wait",  # failed or timed out; the next attempt waits for its backoff timer
    "completed",
    "failed",
    "cancelled",
]

TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
PENDING: frozenset[str] = frozenset({"declared", "waiting", "throttled", "ready"})
VARS_ID = "vars"
"""Reserved id: ``$vars.name`` reads the run's variables."""


class ActionState(msgspec.Struct, frozen=True, kw_only=True):
    """One declared action: what the model asked for and how far it got."""

    action_id: str
    turn_id: str
    declared_by: str
    seq: int
    type: str
    name: str
    mode: str
    params: Any = None
    depends: tuple[str, ...] = ()
    has_refs: bool = False
    timeout_s: float | None = None
    retry: int | None = None
    status: ActionStatus = "declared"
    attempt: int = 1
    timer_id: str | None = None
    result: Any = None
    code: str = ""
    error: str = ""
    latency_ms: float = 0.0

    @property
    def terminal(self) -> bool:
        """True once the action completed, failed or was cancelled."""
        return self.status in TERMINAL

    @property
    def awaited(self) -> bool:
        """True if the run waits for this action (everything but fire_and_forget)."""
        return self.mode != "fire_and_forget"


class TurnState(msgspec.Struct, frozen=True, kw_only=True):
    """One model turn."""

    turn_id: str
    iteration: int
    status: TurnStatus = "generating"
    output: str = ""
    reason: str = ""
    notes: tuple[str, ...] = ()


class RunState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a decision needs about one run; a fold over the run's events."""

    run_id: str = ""
    status: RunStatus = "new"
    agent: AgentSpec | None = None
    variables: dict[str, Any] = msgspec.field(default_factory=dict)
    turns: dict[str, TurnState] = msgspec.field(default_factory=dict)
    current_turn: str | None = None
    turn_count: int = 0
    turns_since_message: int = 0
    messages: tuple[ChatMessage, ...] = ()
    inbox: tuple[str, ...] = ()
    actions: dict[str, ActionState] = msgspec.field(default_factory=dict)
    action_count: int = 0
    usage: Usage = msgspec.field(default_factory=Usage)
    seen: frozenset[str] = frozenset()
    applied: str | None = None

    @property
    def turn(self) -> TurnState | None:
        """The latest turn, if any."""
        return self.turns.get(self.current_turn) if self.current_turn else None

    @property
    def spec(self) -> AgentSpec:
        """The run's agent; DecisionError before ``run.requested`` was folded."""
        if self.agent is None:
            raise DecisionError(f"run {self.run_id or '?'} has no agent: run.requested not folded")
        return self.agent

    @property
    def running(self) -> bool:
        """True while the run may still decide anything."""
        return self.status == "running"

    def results(self) -> dict[str, Any]:
        """What ``$id`` references resolve against: completed results plus ``vars``."""
        done = {a.action_id: a.result for a in self.actions.values() if a.status == "completed"}
        done[VARS_ID] = self.variables
        return done


def id_conflict(state: RunState, data: ActionDeclaredData) -> str | None:
    """Why a declaration cannot take its id (duplicate or reserved), or None if it can."""
    if data.action_id == VARS_ID:
        return reasons.RESERVED_ID
    existing = state.actions.get(data.action_id)
    if existing is not None and (not existing.terminal or existing.turn_id == data.turn_id):
        return reasons.DUPLICATE_ID
    return None
