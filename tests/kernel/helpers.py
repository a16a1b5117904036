"""Given/when/then helpers for the decider: a ``Run`` that feeds facts through ``step``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from cortex.bus.events import (
    ActionCancelled,
    ActionCancelledData,
    ActionCompleted,
    ActionCompletedData,
    ActionDeclared,
    ActionDeclaredData,
    ActionFailed,
    ActionFailedData,
    CancelRequested,
    CancelRequestedData,
    Event,
    MessageReceived,
    MessageReceivedData,
    RunRequested,
    RunRequestedData,
    TimerFired,
    TimerSet,
    TurnCompleted,
    TurnCompletedData,
    TurnFailed,
    TurnFailedData,
    TurnRequested,
    Usage,
)
from cortex.kernel.decider import Command, DispatchWork, Output, RunState, step
from cortex.kernel.protocol.refs import find_refs
from cortex.specs import AgentSpec, Limits, RetryPolicy, ToolSpec

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

SEARCH_SCHEMA = {
    "type": "object",
    "properties": {"q": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
    "required": ["q"],
    "additionalProperties": False,
}


def tool(name: str = "search", schema: dict[str, Any] | None = None, **fields: Any) -> ToolSpec:
    """A tool spec; ``schema`` defaults to any object."""
    return ToolSpec(name=name, params_schema=schema or {"type": "object"}, **fields)


def agent(*tools: ToolSpec, retry: RetryPolicy | None = None, **limits: Any) -> AgentSpec:
    """An agent with ``tools`` (default: search + fetch) and the given limits."""
    tools = tools or (
        tool("search", SEARCH_SCHEMA),
        tool(
            "fetch",
            retry=retry
            or RetryPolicy(max_attempts=3, backoff_s=1.0, backoff_factor=2.0, max_backoff_s=3.0),
        ),
    )
    return AgentSpec(
        name="helper",
        provider="scripted",
        model="m",
        system_prompt="You help.",
        tools=tools,
        agents=("researcher",),
        workflows=("digest",),
        limits=Limits(**limits),
    )


def kinds(outputs: list[Output] | tuple[Output, ...]) -> list[str]:
    """Output types in order: event types, or ``dispatch:<pool>`` / ``cancel_work:<target>``."""
    names = []
    for out in outputs:
        if isinstance(out, DispatchWork):
            names.append(f"dispatch:{out.pool}")
        elif isinstance(out, Command):
            names.append(f"cancel_work:{out.target}")  # type: ignore[attr-defined]
        else:
            names.append(out.type)
    return names


def decisions(outputs: list[Output] | tuple[Output, ...]) -> list[tuple[str, str, str]]:
    """(event type, action id, reason or code) of the action events among the outputs."""
    found = []
    for out in outputs:
        data = getattr(out, "data", None)
        if isinstance(out, Event) and hasattr(data, "action_id") and out.type.startswith("action."):
            found.append(
                (
                    out.type,
                    data.action_id,
                    getattr(data, "reason", None) or getattr(data, "code", ""),
                )
            )
    return found


def first(outputs: list[Output] | tuple[Output, ...], kind: str) -> Any:
    """The first output of ``kind`` (as named by ``kinds``); AssertionError if there is none."""
    for name, out in zip(kinds(outputs), outputs, strict=True):
        if name == kind:
            return out
    raise AssertionError(f"no {kind} among {kinds(outputs)}")


class Run:
    """One run driven through ``step``: every ``when`` is a fact; it returns the decided outputs."""

    def __init__(self, spec: AgentSpec | None = None, run_id: str = "r1") -> None:
        self.spec = spec or agent()
        self.run_id = run_id
        self.state = RunState()
        self.log: list[Event | Command] = []
        self._n = 0

    # ---- plumbing ----

    def event(self, cls: type[Event], data: Any, *, seconds: float | None = None) -> Event:
        """A fact with the next input id and a time one second after the previous one."""
        self._n += 1
        at = T0 + timedelta(seconds=self._n if seconds is None else seconds)
        return cls(id=f"in{self._n}", run_id=self.run_id, time=at, correlation_id="corr", data=data)

    def feed(self, event: Event) -> list[Output]:
        """Step one event; keep the log; return the outputs."""
        decision = step(self.state, event)
        self.state = decision.state
        self.log.append(event)
        self.log.extend(decision.outputs)
        return list(decision.outputs)

    @property
    def turn(self) -> str:
        """The current turn id."""
        assert self.state.current_turn is not None
        return self.state.current_turn

    def last(self, cls: type[Event]) -> Any:
        """The latest event of ``cls`` in the log."""
        return next(e for e in reversed(self.log) if isinstance(e, cls))

    # ---- facts ----

    def start(self, message: str = "hello", **variables: Any) -> list[Output]:
        """run.requested."""
        return self.feed(
            self.event(
                RunRequested,
                RunRequestedData(agent=self.spec, message=message, variables=variables),
            )
        )

    def declare(
        self,
        action_id: str,
        name: str = "search",
        params: Any = ...,
        *,
        type: str = "tool",
        mode: str = "async",
        depends_on: tuple[str, ...] = (),
        turn: str | None = None,
        timeout_s: float | None = None,
        retry: int | None = None,
    ) -> list[Output]:
        """action.declared in the current turn; refs come from ``find_refs`` as the parser does.

        Params default to ``{"q": action_id}`` for search and ``{}`` otherwise."""
        if params is ...:
            params = {"q": action_id} if name == "search" else {}
        data = ActionDeclaredData(
            turn_id=turn or self.turn,
            action_id=action_id,
            type=type,
            name=name,
            mode=mode,
            depends_on=depends_on,
            params=params,
            refs=find_refs(params),
            timeout_s=timeout_s,
            retry=retry,
        )
        return self.feed(self.event(ActionDeclared, data))

    def end_turn(
        self, output: str = "", *, turn: str | None = None, tokens: int = 0
    ) -> list[Output]:
        """turn.completed with the raw output."""
        data = TurnCompletedData(
            turn_id=turn or self.turn, stop_reason="end", output=output, usage=Usage(tokens, tokens)
        )
        return self.feed(self.event(TurnCompleted, data))

    def answer(self, text: str = "done") -> list[Output]:
        """turn.completed with a final response."""
        return self.end_turn(f'<response final="true">{text}</response>')

    def turn_failed(self, code: str = "provider_error") -> list[Output]:
        """turn.failed for the current turn."""
        return self.feed(
            self.event(
                TurnFailed, TurnFailedData(turn_id=self.turn, code=code, reason="model down")
            )
        )

    def complete(
        self,
        action_id: str,
        result: Any = "ok",
        *,
        attempt: int | None = None,
        latency_ms: float = 5,
    ) -> list[Output]:
        """action.completed (attempt defaults to the action's current one)."""
        attempt = attempt or self.state.actions[action_id].attempt
        data = ActionCompletedData(
            action_id=action_id, result=result, attempt=attempt, latency_ms=latency_ms
        )
        return self.feed(self.event(ActionCompleted, data))

    def fail(
        self,
        action_id: str,
        *,
        retryable: bool = False,
        attempt: int | None = None,
        code: str = "boom",
    ) -> list[Output]:
        """action.failed from a worker."""
        attempt = attempt or self.state.actions[action_id].attempt
        data = ActionFailedData(
            action_id=action_id, code=code, error="it broke", retryable=retryable, attempt=attempt
        )
        return self.feed(self.event(ActionFailed, data))

    def worker_cancelled(self, action_id: str) -> list[Output]:
        """action.cancelled reported by a worker."""
        return self.feed(
            self.event(
                ActionCancelled, ActionCancelledData(action_id=action_id, reason="worker_shutdown")
            )
        )

    def cancel(
        self, target: str = "run", *, turn_id: str | None = None, action_id: str | None = None
    ) -> list[Output]:
        """cancel.requested."""
        data = CancelRequestedData(
            target=target, turn_id=turn_id, action_id=action_id, reason="user stop"
        )  # type: ignore[arg-type]
        return self.feed(self.event(CancelRequested, data))

    def message(self, text: str) -> list[Output]:
        """message.received."""
        return self.feed(self.event(MessageReceived, MessageReceivedData(text=text)))

    def fire(self, action_id: str, purpose: str = "action_timeout") -> list[Output]:
        """timer.fired for the latest timer.set of ``action_id`` with ``purpose``."""
        timer = next(
            e
            for e in reversed(self.log)
            if isinstance(e, TimerSet)
            and e.data.action_id == action_id
            and e.data.purpose == purpose
        )
        return self.feed(self.event(TimerFired, timer.data))

    def messages(self) -> tuple[Any, ...]:
        """The messages of the latest turn.requested."""
        return self.last(TurnRequested).data.messages


def encode_outputs(outputs: list[Output] | tuple[Output, ...]) -> list[bytes]:
    """Outputs as JSON bytes (events and commands alike), for exact comparisons."""
    return [msgspec.json.encode(out) for out in outputs]
