"""Starting, talking to, cancelling and following runs: what the HTTP API and the CLI share."""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import aclosing
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from nats.js.errors import NotFoundError

from cortex.aio import cancel_and_wait  # noqa: F401 - re-exported for the CLI and API
from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.events import (
    CancelRequested,
    CancelRequestedData,
    Event,
    MessageReceived,
    MessageReceivedData,
    RunRequested,
    RunRequestedData,
)
from cortex.manifests.store import ManifestStore

log = logging.getLogger("cortex.runs")

TERMINAL = frozenset({"run.completed", "run.failed", "run.cancelled"})
"""Event types that end a run (a chat run may be re-opened by a message after ``run.completed``)."""


def new_run_id() -> str:
    """A fresh run id: ``r`` + 32 hex digits."""
    return "r" + uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def start_run(
    bus: Bus, agent: str, message: str, *, run_id: str | None = None, variables: dict[str, Any] | None = None
) -> str:
    """Publish ``run.requested`` for the applied agent ``agent``; return the run id.

    Raises ManifestError if no such agent is applied, ConfigError for an invalid run id and
    ConcurrencyConflict if ``run_id`` already names a run.
    """
    spec = await ManifestStore(bus).get_agent(agent)
    run_id = subjects.check_token(run_id) if run_id else new_run_id()
    event = RunRequested(
        id=f"{run_id}:requested", run_id=run_id, time=_now(), correlation_id=run_id,
        data=RunRequestedData(agent=spec, message=message, variables=dict(variables or {})),
    )
    await bus.publish_event(event, expected_last_seq=0)
    return run_id


async def run_state(bus: Bus, run_id: str) -> str | None:
    """The type of the run's latest ``run.*`` event (``run.requested`` ... ``run.cancelled``), None if no such run."""
    try:
        msg = await bus.js.get_last_msg(subjects.EVENTS_STREAM, subjects.run_event(run_id, "run.*"))
    except NotFoundError:
        return None
    parsed = subjects.parse_run_event(msg.subject)
    return parsed[1] if parsed else None


async def send_message(bus: Bus, run_id: str, text: str) -> int:
    """Publish ``message.received`` (a further user message); return its stream sequence."""
    event = MessageReceived(
        id=f"{run_id}:message:{uuid.uuid4().hex}", run_id=subjects.check_token(run_id), time=_now(),
        correlation_id=run_id, data=MessageReceivedData(text=text),
    )
    return await bus.publish_event(event)


async def cancel_run(bus: Bus, run_id: str, reason: str = "cancelled by user") -> int:
    """Publish ``cancel.requested`` for the whole run; return its stream sequence."""
    event = CancelRequested(
        id=f"{run_id}:cancel:{uuid.uuid4().hex}", run_id=subjects.check_token(run_id), time=_now(),
        correlation_id=run_id, data=CancelRequestedData(target="run", reason=reason),
    )
    return await bus.publish_event(event)


def watch_run(bus: Bus, run_id: str, *, start_seq: int | None = None) -> AsyncIterator[tuple[Event, int]]:
    """Every event of a run with its stream sequence, from the start (or ``start_seq``), live, never ending."""
    return bus.watch(subjects.run_events(run_id), from_start=True, start_seq=start_seq)


async def follow_run(bus: Bus, run_id: str, *, start_seq: int | None = None) -> AsyncIterator[Event]:
    """A run's events from the start (or ``start_seq``) until ``run.completed``, ``run.failed`` or ``run.cancelled``."""
    async with aclosing(watch_run(bus, run_id, start_seq=start_seq)) as events:
        async for event, _seq in events:
            yield event
            if event.type in TERMINAL:
                return


class AnswerStream:
    """Which answer text may be shown before the run completes (a pure fold, no I/O).

    Only the final response is the answer. Its ``response.delta`` pieces (``final=true``) are sent as
    they stream, up to the first ``$`` of a turn: references (``$id.path``) are substituted by the kernel
    only when the run completes, so from there on the text is held back. At ``run.completed`` the rest
    of the answer is sent. If what was already sent is not the start of the answer (the model's final
    response was rejected and rewritten in a later turn), the whole answer follows after a blank line.
    """

    def __init__(self) -> None:
        self.sent = ""
        self._turn: str | None = None
        self._held = False

    def delta(self, turn_id: str, text: str, final: bool) -> str:
        """Text of one ``response.delta`` that may be sent now ('' if none)."""
        if not final:
            return ""
        if turn_id != self._turn:
            self._turn, self._held = turn_id, False
        if self._held:
            return ""
        cut = text.find("$")
        if cut >= 0:
            self._held, text = True, text[:cut]
        self.sent += text
        return text

    def completed(self, response: str) -> str:
        """The rest of the answer once ``run.completed`` carries the full ``response``."""
        if response.startswith(self.sent):
            rest = response[len(self.sent):]
        else:
            rest = ("\n\n" if self.sent else "") + response
        self.sent += rest
        return rest
