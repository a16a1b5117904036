"""Stop running action attempts when the log says they are over: one subscription per worker process.

The kernel records every cancellation as events on the run (``action.cancelled`` for each live
action, then ``run.cancelled``; ``action.timed_out`` when an attempt ran past its timeout). A
worker subscribes to those subjects of every run once, and each attempt it runs registers for
the signal, so watching costs nothing per action. Register before reading the log: a
cancellation stored earlier is in the log, a later one arrives here.

The watch also remembers which runs and action ids it heard a stop signal for (the last
``memory`` of them), and the WORK stream's last sequence when it started listening. A work
item stored after that, whose run and action id it heard nothing about, has no stop signal in
the log either (the kernel stores an attempt's cancellation or timeout after its work item), so
a first delivery of it needs no log read for that (see ``quiet_since`` and docs/pools.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
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
_Heard = tuple[str, str | None]  # (run id, action id), or (run id, None) for run.cancelled


def stop_reason(event: Event) -> str:
    """A one-line reason for the stop signal ``event`` gives."""
    if isinstance(event, (ActionCancelled, RunCancelled)):
        return f"{event.type}: {event.data.reason}"
    return event.type


class CancelWatch:
    """Resolves a per-attempt future when the attempt is cancelled, timed out or its run cancelled."""

    def __init__(self, bus: Bus, *, memory: int = 16384) -> None:
        self.bus = bus
        self.memory = memory
        self._running: dict[_Key, asyncio.Future[str]] = {}
        self._subs: list = []
        self._heard: OrderedDict[_Heard, None] = OrderedDict()
        self._since: int | None = None  # WORK stream sequence after which every stop signal was heard
        self._forgot = False  # the memory dropped an entry: ``_since`` must move on

    async def start(self) -> None:
        """Subscribe to the watched event subjects of every run, then note the WORK stream's position."""
        for event_type in WATCHED:
            subject = f"{subjects.PREFIX}.evt.*.{event_type}"
            self._subs.append(await self.bus.nc.subscribe(subject, cb=self._on_event))
        await self.bus.nc.flush()
        self._since = await self._work_position()

    async def quiet_since(self, work: ActionWork, seq: int) -> bool:
        """True if the item at WORK sequence ``seq`` came while listening, and no stop signal of its action did."""
        if self._forgot:  # items stored before now may have lost theirs: move the start on
            self._forgot, self._since = False, None
            self._since = await self._work_position()
        return (
            self._since is not None and seq > self._since
            and (work.run_id, work.action_id) not in self._heard and (work.run_id, None) not in self._heard
        )

    async def _work_position(self) -> int | None:
        """The WORK stream's last sequence now, or None if it cannot be read (then nothing is quiet)."""
        try:
            return (await self.bus.js.stream_info(subjects.WORK_STREAM)).state.last_seq
        except Exception as exc:  # noqa: BLE001 - without it every first delivery reads the log
            log.warning("cannot read the position of %s: %r", subjects.WORK_STREAM, exc)
            return None

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
        self._remember(event)
        for key in self.targets(event):
            stopped = self._running.get(key)
            if stopped is not None and not stopped.done():
                stopped.set_result(stop_reason(event))

    def _remember(self, event: Event) -> None:
        """Note the run (run.cancelled) or action id a stop signal was heard for."""
        action_id = getattr(getattr(event, "data", None), "action_id", None)
        self._heard[(event.run_id, action_id if isinstance(action_id, str) else None)] = None
        while len(self._heard) > self.memory:
            self._heard.popitem(last=False)
            self._forgot = True

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
