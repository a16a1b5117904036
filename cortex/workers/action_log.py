"""What the log already says about one dispatched action attempt, read without creating a consumer.

``LogReader`` reads the events stored on a subject filter with JetStream's batched direct get
(``$JS.API.DIRECT.GET.<stream>`` with ``next_by_subj`` and ``batch``): one request-reply per
256 events, no consumer to create and delete. ``ActionLog`` keeps, for the runs a worker saw
lately, the action events read so far and the last stream sequence, so each check reads only
what was stored since the previous one (one round trip). ``attempt_record`` folds an action's
events into what matters for a redelivery.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from nats.aio.client import Client
from nats.aio.msg import Msg

from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.events import (
    ActionCancelled,
    ActionCompleted,
    ActionFailed,
    ActionStarted,
    ActionTimedOut,
    Event,
    decode,
)
from cortex.bus.work import ActionWork
from cortex.errors import BusError, MalformedEvent

log = logging.getLogger("cortex.workers")

_STATUS = "Status"
_END_OF_BATCH = "204"
_NOT_FOUND = "404"
_NO_RESPONDERS = "503"


def action_events_filter(run_id: str) -> str:
    """The subjects of every ``action.*`` event of a run: ``cortex.evt.<run_id>.action.*``."""
    return subjects.run_event(run_id, "action.*")


class LogReader:
    """Reads stored events on a subject filter with batched direct gets, one request per batch.

    Streams without ``allow_direct`` (no responders) are read with an ephemeral consumer instead.
    """

    def __init__(
        self, bus: Bus, *, stream: str = subjects.EVENTS_STREAM, batch: int = 256, timeout_s: float = 5.0
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.batch = batch
        self.timeout_s = timeout_s
        self._nc: Client = bus.nc
        self._prefix = ""
        self._tokens = itertools.count()
        self._pending: dict[str, _Reply] = {}
        self.direct = True
        self._sub = None

    async def start(self) -> None:
        """Subscribe to this reader's reply subjects."""
        self._prefix = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)

    async def close(self) -> None:
        """Drop the reply subscription."""
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # noqa: BLE001 - best effort on shutdown (connection may be gone)
                pass
            self._sub = None

    async def _on_reply(self, msg: Msg) -> None:
        reply = self._pending.get(msg.subject.rsplit(".", 1)[1])
        if reply is not None:
            reply.msgs.append(msg)
            if msg.headers and _STATUS in msg.headers and not reply.done.done():
                reply.done.set_result(None)  # a status message ends every answer

    async def read(
        self, filter_subject: str, *, start_seq: int = 1, types: Collection[str] | None = None
    ) -> tuple[list[Event], int]:
        """Stored events on ``filter_subject`` from ``start_seq`` in order, and the last sequence read.

        With ``types``, only events of those types are decoded and returned (the type is the
        subject's tail); undecodable events are logged and skipped.
        """
        if self._sub is None:
            raise BusError("LogReader.read called before start()")
        events: list[Event] = []
        last_seq = start_seq - 1
        while self.direct:
            more, last_seq = await self._batch(filter_subject, last_seq + 1, types, events)
            if more is None:  # no direct get on this stream: read with a consumer from now on
                self.direct = False
            elif not more:
                return events, last_seq
        async for event, seq in self.bus.read(filter_subject, stream=self.stream, start_seq=last_seq + 1):
            if types is None or event.type in types:
                events.append(event)
            last_seq = seq
        return events, last_seq

    async def _batch(
        self, filter_subject: str, start_seq: int, types: Collection[str] | None, into: list[Event]
    ) -> tuple[bool | None, int]:
        """One batched direct get; (more pending?, last sequence read), or (None, _) without direct get."""
        token = str(next(self._tokens))
        reply = self._pending[token] = _Reply([], asyncio.get_running_loop().create_future())
        request = {"seq": start_seq, "next_by_subj": filter_subject, "batch": self.batch}
        try:
            await self._nc.publish(
                f"$JS.API.DIRECT.GET.{self.stream}", json.dumps(request).encode(), reply=f"{self._prefix}.{token}"
            )
            await asyncio.wait_for(reply.done, self.timeout_s)
        except TimeoutError:
            raise BusError(
                f"no complete answer reading {filter_subject} from {self.stream} within {self.timeout_s:g}s"
            ) from None
        finally:
            del self._pending[token]
        last_seq = start_seq - 1
        for msg in reply.msgs:
            headers = msg.headers or {}
            status = headers.get(_STATUS)
            if status == _END_OF_BATCH:
                return int(headers.get("Nats-Num-Pending", "0")) > 0, last_seq
            if status == _NOT_FOUND:
                return False, last_seq
            if status == _NO_RESPONDERS:
                return None, last_seq
            if status is not None:
                raise BusError(f"reading {filter_subject} from {self.stream} failed: status {status}")
            last_seq = int(headers["Nats-Sequence"])
            subject = headers.get("Nats-Subject", "?")
            if types is not None and subject.split(".", 3)[-1] not in types:
                continue
            try:
                into.append(decode(msg.data, subject, last_seq))
            except MalformedEvent as exc:
                log.warning("%s", exc)
        raise BusError(f"reading {filter_subject} from {self.stream}: the answer ended without a status")


@dataclass(frozen=True)
class _Reply:
    """The messages answering one direct get, and a future set when the closing status arrives."""

    msgs: list[Msg]
    done: asyncio.Future[None]


@dataclass(frozen=True)
class AttemptRecord:
    """What the log says about one dispatched attempt: did a worker start it, what ended it."""

    started: bool = False
    outcome: str | None = None


def attempt_record(events: Iterable[Event], work: ActionWork) -> AttemptRecord:
    """Fold a run's ``action.*`` events (in order) into the record of ``work``'s attempt.

    Events before the ``action.scheduled`` event that dispatched ``work`` (its ``causation_id``)
    belong to an earlier attempt or to an earlier action that had the same id (ids may be reused
    in later turns), so the record starts afresh there. Ends: ``action.completed`` (of any
    attempt once the dispatch is seen: the action is done), ``action.failed`` and
    ``action.timed_out`` of this attempt, ``action.cancelled``.
    """
    started, outcome, anchored = False, None, False
    for event in events:
        if event.id == work.causation_id:
            started, outcome, anchored = False, None, True
            continue
        data = getattr(event, "data", None)
        if getattr(data, "action_id", None) != work.action_id:
            continue
        this_attempt = getattr(data, "attempt", None) == work.attempt
        if isinstance(event, ActionStarted) and this_attempt:
            started = True
        elif isinstance(event, ActionCompleted) and (this_attempt or anchored):
            outcome = outcome or event.type
        elif isinstance(event, (ActionFailed, ActionTimedOut)) and this_attempt:
            outcome = outcome or event.type
        elif isinstance(event, ActionCancelled):
            outcome = outcome or event.type
    return AttemptRecord(started=started, outcome=outcome)


RECORD_TYPES = frozenset(
    ("action.scheduled", "action.started", "action.completed", "action.failed", "action.timed_out", "action.cancelled")
)
"""The action events ``attempt_record`` looks at (progress and the kernel's other decisions are not read)."""


@dataclass
class _RunView:
    """The action events of one run read so far, by action id, and the last stream sequence read."""

    last_seq: int = 0
    by_action: defaultdict[str, list[Event]] = field(default_factory=lambda: defaultdict(list))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ActionLog:
    """Answers "what does the log say about this attempt?" reading only what is new since last asked.

    Keeps the relevant action events of the ``max_runs`` runs used most recently; a run seen for
    the first time (or again after eviction) is read from its start.
    """

    def __init__(self, reader: LogReader, *, max_runs: int = 1024) -> None:
        self.reader = reader
        self.max_runs = max_runs
        self._runs: OrderedDict[str, _RunView] = OrderedDict()

    async def record(self, work: ActionWork) -> AttemptRecord:
        """The record of ``work``'s attempt as of now."""
        view = self._runs.pop(work.run_id, None) or _RunView()
        self._runs[work.run_id] = view
        while len(self._runs) > self.max_runs:
            self._runs.popitem(last=False)
        async with view.lock:
            events, view.last_seq = await self.reader.read(
                action_events_filter(work.run_id), start_seq=view.last_seq + 1, types=RECORD_TYPES
            )
            for event in events:
                view.by_action[event.data.action_id].append(event)  # type: ignore[attr-defined]
        return attempt_record(view.by_action.get(work.action_id, ()), work)
