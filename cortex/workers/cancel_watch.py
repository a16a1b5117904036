"""Stop running action attempts when the log says they are over: one subscription per worker process.

The kernel records every cancellation as events on the run (``action.cancelled`` for each live
action, then ``run.cancelled``; ``action.timed_out`` when an attempt ran past its timeout). A
worker subscribes to those subjects of every run once, and each attempt it runs registers for
the signal, so watching costs nothing per action. Register before reading the log: a
cancellation stored earlier is in the log, a later one arrives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from nats.aio.msg import Msg

from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.events import ActionCancelled, ActionTimedOut, Event, RunCancelled, decode
from cortex.bus.work import ActionWork
from cortex.errors import MalformedEvent

log = logging.getLogger("cortex.workers")

WATCHED = ("action.cancelled", "action.timed_out", "run.cancelled")

_Key = tuple[str, str, int]


def stop_reason(event: Event) -> str:
    """A one-line reason for the stop signal ``event`` gives."""
    if isinstance(event, (ActionCancelled, RunCancelled)):
        return f"{event.type}: {event.data.reason}"
    return event.type


class CancelWatch:
    """Resolves a per-attempt future when the attempt is cancelled, timed out or its run cancelled."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._running: dict[_Key, asyncio.Future[str]] = {}
        self._subs: list = []

    async def start(self) -> None:
        """Subscribe to the watched event subjects of every run."""
        for event_type in WATCHED:
            subject = f"{subjects.PREFIX}.evt.*.{event_type}"
            self._subs.append(await self.bus.nc.subscribe(subject, cb=self._on_event))
        await self.bus.nc.flush()

    async def close(self) -> None:
        """Unsubscribe."""
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

    @contextlib.contextmanager
    def watch(self, work: ActionWork) -> Iterator[asyncio.Future[str]]:
        """A future that resolves with a reason when ``work``'s attempt must stop (while the block runs)."""
        key = (work.run_id, work.action_id, work.attempt)
        stopped: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._running[key] = stopped
        try:
            yield stopped
        finally:
            if self._running.get(key) is stopped:
                del self._running[key]

    async def _on_event(self, msg: Msg) -> None:
        try:
            event = decode(msg.data, msg.subject)
        except MalformedEvent as exc:
            log.warning("%s", exc)
            return
        for key in self.targets(event):
            stopped = self._running.get(key)
            if stopped is not None and not stopped.done():
                stopped.set_result(stop_reason(event))

    def targets(self, event: Event) -> list[_Key]:
        """The registered attempts ``event`` stops."""
        run_id = event.run_id
        if isinstance(event, RunCancelled):
            return [key for key in self._running if key[0] == run_id]
        if isinstance(event, ActionCancelled):
            return [key for key in self._running if key[:2] == (run_id, event.data.action_id)]
        if isinstance(event, ActionTimedOut):
            return [(run_id, event.data.action_id, event.data.attempt)]
        return []
