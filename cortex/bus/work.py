"""Work items the kernel puts on ``cortex.work.<pool>`` for worker pools (a tagged union)."""

from __future__ import annotations

from typing import Any, Union

import msgspec

from cortex.bus.events import TurnRequestedData
from cortex.errors import MalformedEvent
from cortex.specs import ToolSpec


class WorkItem(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Common fields of every work item."""

    run_id: str
    causation_id: str
    correlation_id: str | None = None
    traceparent: str | None = None

    @property
    def msg_id(self) -> str:
        """Deterministic ``Nats-Msg-Id`` so a re-published work item is deduplicated."""
        raise NotImplementedError


class TurnWork(WorkItem, tag="turn"):
    """Run one model turn."""

    request: TurnRequestedData

    @property
    def msg_id(self) -> str:
        """Deterministic message id of this turn's work item."""
        return f"work:{self.run_id}:{self.request.turn_id}"


class ActionWork(WorkItem, tag="action"):
    """Run one action (tool, agent, workflow, relic, llm sub-call) with resolved params."""

    action_id: str
    type: str
    name: str
    params: Any = None
    mode: str = "async"
    attempt: int = 1
    timeout_s: float = 120.0
    tool: ToolSpec | None = None

    @property
    def msg_id(self) -> str:
        """Deterministic message id of this attempt's work item."""
        return f"work:{self.run_id}:{self.action_id}:{self.attempt}"


AnyWork = Union[TurnWork, ActionWork]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyWork)


def encode_work(item: WorkItem) -> bytes:
    """Encode a work item as JSON."""
    return _encoder.encode(item)


def decode_work(payload: bytes, subject: str = "?", sequence: int | None = None) -> AnyWork:
    """Decode a work item, or raise MalformedEvent naming subject and sequence."""
    try:
        return _decoder.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise MalformedEvent(subject, sequence, f"not a valid work item: {exc}") from None
