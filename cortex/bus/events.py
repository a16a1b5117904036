"""The event envelope and the catalogue of events, as a msgspec tagged union.

Every event is JSON: ``{"type": "...", "id": "...", "run_id": "...", "time": "...",
"causation_id": ..., "correlation_id": ..., "trace": {...}, "data": {...}}``. The ``type``
field is the tag; ``data`` holds the event-specific payload. docs/subjects.md lists them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Union

import msgspec

from cortex.errors import MalformedEvent
from cortex.specs import ActionMode, ActionType, AgentSpec, ToolSpec


class TraceContext(msgspec.Struct, frozen=True, omit_defaults=True):
    """W3C trace context (``traceparent`` and optional ``tracestate``)."""

    traceparent: str
    tracestate: str = ""


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """The envelope shared by every event; subclasses add a typed ``data``."""

    id: str
    run_id: str = ""
    time: datetime
    causation_id: str | None = None
    correlation_id: str | None = None
    trace: TraceContext | None = None

    @property
    def type(self) -> str:
        """The event type, e.g. ``action.completed`` (the union's tag)."""
        return self.__struct_config__.tag  # type: ignore[return-value]


class Usage(msgspec.Struct, frozen=True):
    """Token usage of one model call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


# ---- runs -------------------------------------------------------------------------


class RunRequestedData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``run.requested``."""

    agent: AgentSpec
    message: str
    parent_run_id: str | None = None
    parent_action_id: str | None = None
    variables: dict[str, Any] = msgspec.field(default_factory=dict)


class RunRequested(Event, tag="run.requested"):
    """Somebody asked for a run of an agent with a first message."""

    data: RunRequestedData


class RunStartedData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``run.started``."""

    agent: str


class RunStarted(Event, tag="run.started"):
    """The kernel accepted the run."""

    data: RunStartedData


class MessageReceivedData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``message.received``."""

    text: str


class MessageReceived(Event, tag="message.received"):
    """A user sent a further message to a run (multi-turn chat)."""

    data: MessageReceivedData


class RunCompletedData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``run.completed``."""

    response: str
    usage: Usage = msgspec.field(default_factory=Usage)


class RunCompleted(Event, tag="run.completed"):
    """The run ended with a final response."""

    data: RunCompletedData


class RunFailedData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``run.failed``."""

    code: str
    reason: str


class RunFailed(Event, tag="run.failed"):
    """The run ended without a final response."""

    data: RunFailedData


class CancelRequestedData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``cancel.requested``: the run, a turn or one action."""

    target: Literal["run", "turn", "action"] = "run"
    turn_id: str | None = None
    action_id: str | None = None
    reason: str = "cancelled by user"


class CancelRequested(Event, tag="cancel.requested"):
    """Somebody asked to cancel the run, a turn or an action."""

    data: CancelRequestedData


class RunCancelledData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``run.cancelled``."""

    reason: str


class RunCancelled(Event, tag="run.cancelled"):
    """The run was cancelled."""

    data: RunCancelledData


# ---- turns ------------------------------------------------------------------------


class ChatMessage(msgspec.Struct, frozen=True):
    """One message of a model context."""

    role: Literal["system", "user", "assistant"]
    content: str


class TurnRequestedData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``turn.requested``."""

    turn_id: str
    iteration: int
    provider: str
    model: str
    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int = 1024
    provider_options: dict[str, Any] = msgspec.field(default_factory=dict)
    next_action_ordinal: int = 1


class TurnRequested(Event, tag="turn.requested"):
    """The kernel asked the llm pool for a model turn."""

    data: TurnRequestedData


class TurnStartedData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``turn.started``."""

    turn_id: str
    worker: str = ""
    attempt: int = 1


class TurnStarted(Event, tag="turn.started"):
    """A worker began streaming a turn."""

    data: TurnStartedData


class TurnChunkData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``turn.chunk``: a batch of raw model text."""

    turn_id: str
    seq: int
    text: str


class TurnChunk(Event, tag="turn.chunk"):
    """Raw model output, batched."""

    data: TurnChunkData


class TextDeltaData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``thought.delta`` and ``response.delta``."""

    turn_id: str
    text: str
    final: bool = False


class ThoughtDelta(Event, tag="thought.delta"):
    """A piece of the model's thought stream."""

    data: TextDeltaData


class ResponseDelta(Event, tag="response.delta"):
    """A piece of the model's response stream (``final`` for the final response)."""

    data: TextDeltaData


class ParseErrorData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``parse.error``."""

    turn_id: str
    code: str
    message: str
    action_id: str | None = None
    offset: int = 0
    snippet: str = ""


class ParseErrorEvent(Event, tag="parse.error"):
    """The model wrote malformed protocol output (recoverable)."""

    data: ParseErrorData


class TurnCompletedData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``turn.completed``."""

    turn_id: str
    stop_reason: str
    output: str
    usage: Usage = msgspec.field(default_factory=Usage)
    latency_ms: float = 0.0


class TurnCompleted(Event, tag="turn.completed"):
    """The model's turn ended."""

    data: TurnCompletedData


class TurnFailedData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``turn.failed``."""

    turn_id: str
    code: str
    reason: str


class TurnFailed(Event, tag="turn.failed"):
    """The model call failed."""

    data: TurnFailedData


class TurnCancelledData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``turn.cancelled``."""

    turn_id: str
    reason: str
    detail: str = ""


class TurnCancelled(Event, tag="turn.cancelled"):
    """The kernel stopped a model turn (cancellation, or the run ended)."""

    data: TurnCancelledData


# ---- actions ----------------------------------------------------------------------


class ActionDeclaredData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``action.declared``: an action the model wrote."""

    turn_id: str
    action_id: str
    type: ActionType | str
    name: str
    mode: ActionMode | str = "async"
    depends_on: tuple[str, ...] = ()
    params: Any = None
    refs: tuple[str, ...] = ()
    raw: str = ""
    output_key: str | None = None
    timeout_s: float | None = None
    retry: int | None = None


class ActionDeclared(Event, tag="action.declared"):
    """The parser delivered a complete action."""

    data: ActionDeclaredData


class ActionDecisionData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of the kernel's scheduling decisions, with a machine-readable reason."""

    action_id: str
    reason: str
    detail: str = ""
    waiting_on: tuple[str, ...] = ()
    attempt: int = 1
    pool: str = ""
    delay_s: float = 0.0


class ActionScheduled(Event, tag="action.scheduled"):
    """The action was dispatched to its pool (reason: dependencies met)."""

    data: ActionDecisionData


class ActionWaiting(Event, tag="action.waiting"):
    """The action waits on other actions."""

    data: ActionDecisionData


class ActionDenied(Event, tag="action.denied"):
    """The action was refused (unknown tool, invalid params, policy)."""

    data: ActionDecisionData


class ActionThrottled(Event, tag="action.throttled"):
    """The action waits for a free slot (parallel limit, rate limit)."""

    data: ActionDecisionData


class ActionTimedOut(Event, tag="action.timed_out"):
    """The action ran past its timeout."""

    data: ActionDecisionData


class ActionRetried(Event, tag="action.retried"):
    """The action failed and will be tried again after a backoff."""

    data: ActionDecisionData


class ActionStartedData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``action.started``."""

    action_id: str
    attempt: int = 1
    worker: str = ""


class ActionStarted(Event, tag="action.started"):
    """A worker began running the action."""

    data: ActionStartedData


class ActionProgressData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``action.progress``."""

    action_id: str
    message: str = ""
    fraction: float | None = None


class ActionProgress(Event, tag="action.progress"):
    """A running action reported progress."""

    data: ActionProgressData


class ActionCompletedData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``action.completed``."""

    action_id: str
    result: Any = None
    latency_ms: float = 0.0
    attempt: int = 1


class ActionCompleted(Event, tag="action.completed"):
    """The action finished with a result."""

    data: ActionCompletedData


class ActionFailedData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``action.failed``."""

    action_id: str
    code: str
    error: str
    retryable: bool = False
    latency_ms: float = 0.0
    attempt: int = 1


class ActionFailed(Event, tag="action.failed"):
    """The action finished with an error the model sees next turn."""

    data: ActionFailedData


class ActionCancelledData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``action.cancelled``."""

    action_id: str
    reason: str
    detail: str = ""


class ActionCancelled(Event, tag="action.cancelled"):
    """The action was cancelled."""

    data: ActionCancelledData


# ---- relics -----------------------------------------------------------------------


class RelicData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of relic lifecycle events: which service instance, where, and why."""

    relic: str
    instance: str
    worker: str = ""
    pid: int | None = None
    url: str = ""
    restarts: int = 0
    reason: str = ""
    detail: str = ""


class RelicStarted(Event, tag="relic.started"):
    """A relic's process is up and passed its health check."""

    data: RelicData


class RelicUnhealthy(Event, tag="relic.unhealthy"):
    """A relic crashed or failed its health checks (a restart follows if the policy allows)."""

    data: RelicData


class RelicRestarted(Event, tag="relic.restarted"):
    """A relic was restarted after a crash or failed health checks, and is healthy again."""

    data: RelicData


class RelicStopRequested(Event, tag="relic.stop_requested"):
    """A relic worker that does not own the relic asks its owner to stop it."""

    data: RelicData


class RelicStopped(Event, tag="relic.stopped"):
    """A relic's process is gone: stopped on request, at run end, at TTL, or given up after crashes."""

    data: RelicData


# ---- timers -----------------------------------------------------------------------


class TimerData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``timer.set`` and ``timer.fired``."""

    timer_id: str
    due: datetime
    purpose: str
    action_id: str | None = None


class TimerSet(Event, tag="timer.set"):
    """The kernel wants to be woken at ``due`` (timeouts, retry backoff)."""

    data: TimerData


class TimerFired(Event, tag="timer.fired"):
    """A timer set earlier is due."""

    data: TimerData


# ---- system (no run) --------------------------------------------------------------


class PluginData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of plugin lifecycle events."""

    plugin: str
    worker_id: str
    version: str = ""
    tools: tuple[ToolSpec, ...] = ()
    permissions: dict[str, Any] = msgspec.field(default_factory=dict)


class PluginRegistered(Event, tag="plugin.registered"):
    """A worker loaded a plugin and serves its tools."""

    data: PluginData


class PluginHeartbeat(Event, tag="plugin.heartbeat"):
    """A worker serving a plugin is alive."""

    data: PluginData


class PluginUnregistered(Event, tag="plugin.unregistered"):
    """A worker stopped serving a plugin."""

    data: PluginData


class ManifestAppliedData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``manifest.applied``."""

    kind: str
    name: str
    revision: int = 0
    digest: str = ""


class ManifestApplied(Event, tag="manifest.applied"):
    """A manifest was stored in the manifests bucket."""

    data: ManifestAppliedData


class PingData(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of ``bus.ping`` (round-trip checks and benchmarks)."""

    text: str = ""
    seq: int = 0


class Ping(Event, tag="bus.ping"):
    """A no-op event used for round trips and benchmarks."""

    data: PingData


AnyEvent = Union[
    RunRequested,
    RunStarted,
    MessageReceived,
    RunCompleted,
    RunFailed,
    CancelRequested,
    RunCancelled,
    TurnRequested,
    TurnStarted,
    TurnChunk,
    ThoughtDelta,
    ResponseDelta,
    ParseErrorEvent,
    TurnCompleted,
    TurnFailed,
    TurnCancelled,
    ActionDeclared,
    ActionScheduled,
    ActionWaiting,
    ActionDenied,
    ActionThrottled,
    ActionTimedOut,
    ActionRetried,
    ActionStarted,
    ActionProgress,
    ActionCompleted,
    ActionFailed,
    ActionCancelled,
    RelicStarted,
    RelicUnhealthy,
    RelicRestarted,
    RelicStopRequested,
    RelicStopped,
    TimerSet,
    TimerFired,
    PluginRegistered,
    PluginHeartbeat,
    PluginUnregistered,
    ManifestApplied,
    Ping,
]

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__struct_config__.tag: cls for cls in AnyEvent.__args__  # type: ignore[attr-defined]
}

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)


def encode(event: Event) -> bytes:
    """Encode an event as JSON bytes."""
    return _encoder.encode(event)


def decode(payload: bytes, subject: str = "?", sequence: int | None = None) -> Event:
    """Decode JSON bytes into a typed event, or raise MalformedEvent naming subject and sequence."""
    try:
        return _decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise MalformedEvent(subject, sequence, f"not a known event: {exc}") from None
    except msgspec.DecodeError as exc:
        raise MalformedEvent(subject, sequence, f"not valid JSON: {exc}") from None


def to_builtins(event: Event) -> dict[str, Any]:
    """The event as plain JSON-ready Python values (``type`` included)."""
    return msgspec.to_builtins(event)  # type: ignore[return-value]
