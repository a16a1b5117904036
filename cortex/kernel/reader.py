"""Reading a run's events after a stream sequence with direct gets (no consumer to create)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Container
from dataclasses import dataclass

from nats.aio.msg import Msg

from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.events import Event, decode
from cortex.errors import BusError, MalformedEvent

log = logging.getLogger("cortex.kernel")

_NOT_FOUND = "404"


@dataclass(frozen=True)
class RunChunk:
    """Events of a run after some sequence, in log order, and the sequence of the run's last message."""

    events: list[Event]
    last_seq: int


class RunReader:
    """Reads the tail of a run's subjects with direct gets, answered on one inbox (no consumer).

    The run's last sequence comes from a ``last_by_subj`` get (an index lookup); its messages
    after a sequence from ``next_by_subj`` gets, one message each, up to that last one.
    (A batched direct get would take one request, but nats-server counts the pending messages
    for every one it returns and looks on to the end of the stream: ten times the server CPU.)
    """

    def __init__(self, bus: Bus, *, stream: str = subjects.EVENTS_STREAM, timeout_s: float = 5.0) -> None:
        self.bus = bus
        self.stream = stream
        self.timeout_s = timeout_s
        self._inbox = bus.nc.new_inbox()
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._tokens = itertools.count()
        self._sub = None

    async def start(self) -> None:
        """Subscribe to the reply inbox (once)."""
        if self._sub is None:
            self._sub = await self.bus.nc.subscribe(f"{self._inbox}.*", cb=self._route)

    async def close(self) -> None:
        """Drop the reply inbox."""
        if self._sub is not None:
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass

    async def _route(self, msg: Msg) -> None:
        waiter = self._waiting.get(msg.subject.rpartition(".")[2])
        if waiter is not None and not waiter.done():
            waiter.set_result(msg)

    async def last_seq(self, run_id: str) -> int:
        """Stream sequence of the run's last message (0 if it has none)."""
        msg = await self._get({"last_by_subj": subjects.run_events(run_id)})
        return _seq(msg) if msg is not None else 0

    async def next_seq(self, run_id: str, seq: int) -> int | None:
        """Stream sequence of the run's first message after ``seq``, or None if there is none."""
        msg = await self._get({"seq": seq + 1, "next_by_subj": subjects.run_events(run_id)})
        return _seq(msg) if msg is not None else None

    async def read_after(self, run_id: str, seq: int, known: Container[str] = ()) -> RunChunk:
        """Every event of ``run_id`` stored after stream sequence ``seq``, up to the run's last one.

        Events whose message id is in ``known`` (folded already) are not decoded nor returned.
        """
        subject = subjects.run_events(run_id)
        end = await self.last_seq(run_id)
        events: list[Event] = []
        last = seq
        while last < end:
            msg = await self._get({"seq": last + 1, "next_by_subj": subject})
            if msg is None:
                break
            last = _seq(msg)
            if (msg.headers or {}).get("Nats-Msg-Id") in known:
                continue
            try:
                events.append(decode(msg.data, msg.headers.get("Nats-Subject", subject), last))
            except MalformedEvent as exc:  # it stays in the log; the fold never sees it
                log.warning("%s", exc)
        return RunChunk(events, max(last, seq))

    async def _get(self, request: dict[str, object]) -> Msg | None:
        """Send a direct get; the message, or None if there is none."""
        await self.start()
        token = str(next(self._tokens))
        waiter: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._waiting[token] = waiter
        try:
            await self.bus.nc.publish(
                f"$JS.API.DIRECT.GET.{self.stream}", json.dumps(request).encode(),
                reply=f"{self._inbox}.{token}",
            )
            try:
                msg = await asyncio.wait_for(waiter, self.timeout_s)
            except asyncio.TimeoutError:
                raise BusError(f"direct get on {self.stream}: no answer within {self.timeout_s:g}s") from None
        finally:
            del self._waiting[token]
        status = (msg.headers or {}).get("Status")
        if status is None:
            return msg
        if status == _NOT_FOUND:
            return None
        detail = next((v for k, v in msg.headers.items() if str(getattr(k, "value", k)) == "Description"), "")
        raise BusError(f"direct get on {self.stream} failed: {status} {detail}")


def _seq(msg: Msg) -> int:
    return int(msg.headers["Nats-Sequence"])
