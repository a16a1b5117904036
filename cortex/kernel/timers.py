"""The timer service: publishes ``timer.fired`` when a ``timer.set`` of the decider is due.

Pending timers live in JetStream, not in a kernel's memory: every kernel pulls from one
durable consumer on ``cortex.evt.*.timer.set``; a timer not due yet is handed back with a
delayed negative ack (``nak(delay)``) and comes back at its due time, to whichever kernel is
alive then. A kernel that dies holding one loses nothing (the message is redelivered after
the ack wait). Firing is idempotent: the ``timer.fired`` id (and message id) derives from the
``timer.set`` id, and its time is the due time, so two kernels firing one timer publish the
same event once. A timer the cached run state shows as stale (the action finished or moved
on) is dropped instead of fired; firing a stale one would be harmless, the decider ignores it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from nats.aio.msg import Msg

from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.consumer import DurableConsumer
from cortex.bus.events import Event, TimerFired, TimerSet, decode
from cortex.kernel.cache import RunCache

if TYPE_CHECKING:
    from cortex.kernel.service import KernelStats

log = logging.getLogger("cortex.kernel")

DURABLE = "kernel-timers"
MAX_PENDING = 100_000
"""Timers waiting at once (all runs): a nak'd timer counts against the consumer's ack-pending limit."""

_MAX_DELIVER = 1_000  # every nak(delay) is a delivery; a timer usually needs two
_EARLY_S = 0.002  # a timer this close to due fires now


def utcnow() -> datetime:
    """The current time in UTC (the timer service is the kernel's one reader of the clock)."""
    return datetime.now(timezone.utc)


def fired_event(timer: TimerSet) -> TimerFired:
    """The ``timer.fired`` for a ``timer.set``: deterministic id and time, same data."""
    return TimerFired(
        id=f"{timer.id}:fired",
        run_id=timer.run_id,
        time=timer.data.due,
        causation_id=timer.id,
        correlation_id=timer.correlation_id,
        trace=timer.trace,
        data=timer.data,
    )


def seconds_until(due: datetime, now: datetime) -> float:
    """Seconds from ``now`` to ``due`` (a naive ``due`` is taken as UTC)."""
    if due.tzinfo is None:
        due = due.replace(tzinfo=timezone.utc)
    return (due - now).total_seconds()


class TimerService:
    """Fires due timers for every run; timers survive kernel crashes (they wait in JetStream)."""

    def __init__(
        self,
        bus: Bus,
        cache: RunCache,
        stats: "KernelStats",
        *,
        durable: str = DURABLE,
        ack_wait_s: float = 30.0,
        concurrency: int = 32,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.bus = bus
        self.cache = cache
        self.stats = stats
        self.clock = clock
        self.consumer: DurableConsumer[Event] = DurableConsumer(
            bus,
            stream=subjects.EVENTS_STREAM,
            durable=durable,
            filter_subjects=[f"{subjects.PREFIX}.evt.*.timer.set"],
            decoder=decode,
            handler=self.handle,
            concurrency=concurrency,
            ack_wait_s=ack_wait_s,
            max_deliver=_MAX_DELIVER,
            max_ack_pending=MAX_PENDING,
        )

    async def run(self) -> None:
        """Pull timers until ``stop()``."""
        await self.consumer.run()

    def stop(self) -> None:
        """Stop pulling timers (the ones in hand are handed back or fired first)."""
        self.consumer.stop()

    async def handle(self, event: Event, msg: Msg) -> None:
        """Fire a due timer, hand back one that is not due, drop a stale one."""
        if not isinstance(event, TimerSet) or self.is_stale(event):
            return
        delay = seconds_until(event.data.due, self.clock())
        if delay > _EARLY_S:
            await msg.nak(delay=delay)
            return
        await self.bus.publish_event(fired_event(event))
        self.stats.timers_fired += 1

    def is_stale(self, timer: TimerSet) -> bool:
        """True if the cached state of the run has this timer and shows it no longer matters."""
        view = self.cache.peek(timer.run_id)
        if view is None or not timer.data.action_id or timer.id not in view.state.seen:
            return False
        action = view.state.actions.get(timer.data.action_id)
        return action is None or action.terminal or action.timer_id != timer.data.timer_id
