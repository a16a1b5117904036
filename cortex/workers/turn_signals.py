"""What a running turn listens for on its run's subjects: earlier attempts, cancellation, sync outcomes.

``TurnSignals`` is a plain fold over those events (no I/O); ``read_history`` fills it from the
log and a ``SignalFeed`` keeps it current, each through one JetStream consumer filtered to
those subjects, so a turn never reads the run's chunk and delta traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.events import (
    ActionCancelled,
    ActionCompleted,
    ActionDeclared,
    ActionDeclaredData,
    ActionFailed,
    ActionRetried,
    Event,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
)
from cortex.kernel.decider.context import result_block
from cortex.kernel.decider.state import ActionState
from cortex.workers.base import is_cancellation

SIGNAL_TYPES = (
    "turn.started",
    "turn.completed",
    "turn.failed",
    "turn.cancelled",
    "cancel.requested",
    "run.cancelled",
    "action.declared",
    "action.completed",
    "action.failed",
    "action.cancelled",
    "action.retried",
)
"""The event types a turn reads from its run (everything else on the run is ignored)."""

_OUTCOMES = (ActionCompleted, ActionFailed, ActionCancelled, ActionRetried)


def signal_subjects(run_id: str) -> list[str]:
    """The run's subjects a turn listens to."""
    return [subjects.run_event(run_id, kind) for kind in SIGNAL_TYPES]


@dataclass(frozen=True)
class Declared:
    """An action this turn declared, and the stream sequence of its ``action.declared``."""

    data: ActionDeclaredData
    seq: int


@dataclass
class TurnSignals:
    """The fold over the signal events of one run, as seen by one of its turns."""

    turn_id: str
    retry_grace_s: float = 2.0
    attempts: int = 0
    finished: str | None = None
    cancel: Event | None = None
    declared: dict[str, Declared] = field(default_factory=dict)
    outcomes: dict[str, list[tuple[int, float, Event]]] = field(default_factory=dict)

    def observe(self, event: Event, seq: int, now: float) -> None:
        """Fold one event read at stream sequence ``seq`` (``now``: the monotonic clock)."""
        if isinstance(event, _OUTCOMES):
            self.outcomes.setdefault(event.data.action_id, []).append((seq, now, event))
        elif isinstance(event, ActionDeclared):
            if event.data.turn_id == self.turn_id:
                self.declared[event.data.action_id] = Declared(event.data, seq)
        elif isinstance(event, TurnStarted):
            if event.data.turn_id == self.turn_id:
                self.attempts = max(self.attempts, event.data.attempt)
        elif isinstance(event, (TurnCompleted, TurnFailed)):
            if event.data.turn_id == self.turn_id:
                self.finished = event.type
        if self.cancel is None and is_cancellation(event, turn_id=self.turn_id):
            self.cancel = event

    def outcome(self, action_id: str, after_seq: int, now: float) -> Event | None:
        """The final outcome of the action declared at ``after_seq``, or None while there is none.

        ``action.completed``, ``action.cancelled`` and a non-retryable ``action.failed`` are
        final. A retryable ``action.failed`` is final unless the kernel answers it with
        ``action.retried`` within ``retry_grace_s`` (the kernel writes nothing more when it gives
        up), so a caller that gets None asks again after at most ``retry_grace_s``.
        """
        failed: tuple[float, Event] | None = None
        for seq, seen, event in self.outcomes.get(action_id, ()):
            if seq <= after_seq:
                continue  # an outcome of an earlier action with the same id
            if isinstance(event, ActionRetried):
                failed = None
            elif isinstance(event, ActionFailed) and event.data.retryable:
                failed = (seen, event)
            else:
                return event
        if failed is not None and now - failed[0] >= self.retry_grace_s:
            return failed[1]
        return None


def injected_result(declared: ActionDeclaredData, outcome: Event, max_chars: int) -> str:
    """The ``<action_result>`` block for a sync action's outcome, exactly as the kernel writes it."""
    changes: dict[str, object]
    if isinstance(outcome, ActionCompleted):
        changes = {"status": "completed", "result": outcome.data.result}
    elif isinstance(outcome, ActionFailed):
        changes = {"status": "failed", "code": outcome.data.code, "error": outcome.data.error}
    else:
        assert isinstance(outcome, ActionCancelled)
        changes = {"status": "cancelled", "code": outcome.data.reason, "error": outcome.data.detail}
    action = ActionState(
        action_id=declared.action_id,
        turn_id=declared.turn_id,
        declared_by="",
        seq=0,
        type=str(declared.type),
        name=declared.name,
        mode=str(declared.mode),
        latency_ms=getattr(outcome.data, "latency_ms", 0.0),
        **changes,  # type: ignore[arg-type]
    )
    return result_block(action, max_chars)


def same_action(a: ActionDeclaredData, b: ActionDeclaredData) -> bool:
    """Whether two declarations ask for the same thing (a re-run re-declaring an action)."""
    keys = ("type", "name", "mode", "depends_on", "params")
    return all(msgspec.to_builtins(getattr(a, k)) == msgspec.to_builtins(getattr(b, k)) for k in keys)


async def read_history(bus: Bus, run_id: str, observe: Callable[[Event, int], None]) -> int:
    """Fold the run's signal events stored so far; return the last stream sequence read (0: none)."""
    filters = signal_subjects(run_id)
    config = ConsumerConfig(
        filter_subjects=filters,
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.ALL,
        inactive_threshold=30.0,
        mem_storage=True,
    )
    sub = await bus.js.pull_subscribe(filters[0], stream=subjects.EVENTS_STREAM, config=config)
    last = 0
    try:
        remaining = (await sub.consumer_info()).num_pending
        while remaining > 0:
            for msg in await sub.fetch(min(remaining, 512), timeout=5.0):
                remaining = msg.metadata.num_pending
                last = msg.metadata.sequence.stream
                event = bus.decode_or_none(msg)
                if event is not None:
                    observe(event, last)
    finally:
        await sub.unsubscribe()
    return last


class SignalFeed:
    """A live subscription to the run's signal subjects, feeding each event to ``observe``."""

    def __init__(self, sub: JetStreamContext.PushSubscription, task: asyncio.Task[None]) -> None:
        self._sub = sub
        self._task = task

    @classmethod
    async def open(
        cls, bus: Bus, run_id: str, after_seq: int, observe: Callable[[Event, int], None]
    ) -> SignalFeed:
        """Subscribe to the signal events stored after ``after_seq`` (and all later ones)."""
        filters = signal_subjects(run_id)
        config = ConsumerConfig(filter_subjects=filters, deliver_policy=DeliverPolicy.ALL)
        if after_seq:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = after_seq + 1
        sub = await bus.js.subscribe(
            filters[0], stream=subjects.EVENTS_STREAM, ordered_consumer=True, config=config
        )

        async def feed() -> None:
            async for msg in sub.messages:
                event = bus.decode_or_none(msg)
                if event is not None:
                    observe(event, msg.metadata.sequence.stream)

        return cls(sub, asyncio.create_task(feed()))

    async def aclose(self) -> None:
        """Stop feeding and unsubscribe."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()
