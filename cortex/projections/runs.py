"""The runs read model: one ``RunView`` per run (status, agent, times, usage, response), and its fold."""

from __future__ import annotations

from datetime import datetime

import msgspec

from cortex.bus.events import (
    ActionDeclared,
    Event,
    MessageReceived,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunRequested,
    RunStarted,
    TurnCompleted,
    TurnRequested,
)

ACTIVE: frozenset[str] = frozenset({"requested", "running"})
"""Statuses of a run that has not ended."""

MESSAGE_PREVIEW = 500


class UsageTotals(msgspec.Struct, frozen=True):
    """Token usage summed over a run's turns."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class RunView(msgspec.Struct, frozen=True, kw_only=True):
    """What is known about one run (key: the run id in ``cortex_runs``)."""

    run_id: str
    agent: str = ""
    status: str = "running"
    message: str = ""
    parent_run_id: str | None = None
    parent_action_id: str | None = None
    correlation_id: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    updated_at: datetime | None = None
    usage: UsageTotals = UsageTotals()
    turns: int = 0
    actions: int = 0
    messages: int = 0
    response: str = ""
    error_code: str = ""
    error: str = ""
    seq: int = 0

    @property
    def active(self) -> bool:
        """True while the run has not ended."""
        return self.status in ACTIVE


def _usage(total: UsageTotals, prompt: int, completion: int) -> UsageTotals:
    prompt, completion = total.prompt_tokens + prompt, total.completion_tokens + completion
    return UsageTotals(prompt, completion, prompt + completion)


def fold_run(view: RunView | None, event: Event, seq: int) -> RunView | None:
    """Apply one run event (stream sequence ``seq``); events already folded or irrelevant change nothing."""
    if not event.run_id or (view is not None and seq <= view.seq):
        return view
    base = view or RunView(
        run_id=event.run_id,
        status="requested" if isinstance(event, RunRequested) else "running",
        created_at=event.time,
        correlation_id=event.correlation_id,
    )
    changes = _changes(base, event)
    if changes is None:
        return view
    return msgspec.structs.replace(base, **changes, updated_at=event.time, seq=seq)


def _changes(view: RunView, event: Event) -> dict[str, object] | None:
    """The fields ``event`` changes, or None if it does not concern the runs model."""
    if isinstance(event, RunRequested):
        if view.agent:  # a run is requested once; the decider ignores a second request too
            return None
        data = event.data
        return dict(
            agent=data.agent.name,
            message=data.message[:MESSAGE_PREVIEW],
            parent_run_id=data.parent_run_id,
            parent_action_id=data.parent_action_id,
            correlation_id=event.correlation_id,
            created_at=event.time,
            messages=view.messages + 1,
        )
    if isinstance(event, RunStarted):
        return dict(agent=view.agent or event.data.agent, status="running", started_at=event.time)
    if isinstance(event, MessageReceived):
        reopened = view.status == "completed"
        return dict(
            messages=view.messages + 1,
            status="running" if reopened else view.status,
            ended_at=None if reopened else view.ended_at,
        )
    if isinstance(event, TurnRequested):
        return dict(turns=view.turns + 1)
    if isinstance(event, TurnCompleted):
        used = event.data.usage
        return dict(usage=_usage(view.usage, used.prompt_tokens, used.completion_tokens))
    if isinstance(event, ActionDeclared):
        return dict(actions=view.actions + 1)
    if isinstance(event, RunCompleted):
        used = event.data.usage
        usage = view.usage
        if used.prompt_tokens + used.completion_tokens > usage.total_tokens:  # turns missing from the log
            usage = _usage(UsageTotals(), used.prompt_tokens, used.completion_tokens)
        return dict(status="completed", ended_at=event.time, response=event.data.response, usage=usage)
    if isinstance(event, RunFailed):
        return dict(status="failed", ended_at=event.time, error_code=event.data.code, error=event.data.reason)
    if isinstance(event, RunCancelled):
        return dict(status="cancelled", ended_at=event.time, error_code="cancelled", error=event.data.reason)
    return None
