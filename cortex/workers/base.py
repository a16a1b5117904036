"""What every worker pool shares: the work consumer, event construction, keep-alive, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

from nats.aio.msg import Msg

from cortex.aio import cancel_and_wait
from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.consumer import DurableConsumer
from cortex.bus.feed import Delivery, PullFeed
from cortex.bus.events import ActionCancelled, CancelRequested, Event, RunCancelled, TurnCancelled
from cortex.bus.work import AnyWork, WorkItem, decode_work

log = logging.getLogger("cortex.workers")

E = TypeVar("E", bound=Event)


def worker_id(pool: str) -> str:
    """A readable, unique id for this worker process."""
    return f"{pool}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


def utcnow() -> datetime:
    """The current time in UTC (workers are at the edge: they may read the clock)."""
    return datetime.now(timezone.utc)


def make_event(cls: type[E], item: WorkItem, data: Any, *, event_id: str, time: datetime | None = None) -> E:
    """An outcome event for a work item, linked to it by causation and correlation ids."""
    return cls(
        id=event_id,
        run_id=item.run_id,
        time=time or utcnow(),
        causation_id=item.causation_id,
        correlation_id=item.correlation_id,
        data=data,
    )


def pool_consumer(
    bus: Bus, pool: str, handler: Callable[[AnyWork, Msg], Awaitable[None]], *,
    lane: str | None = None, concurrency: int = 8, ack_wait_s: float = 30.0, max_deliver: int = 5,
) -> DurableConsumer[AnyWork]:
    """The shared durable consumer of a pool (any number of processes pull from it)."""
    durable = f"pool-{pool}" + (f"-{lane}" if lane else "")
    return DurableConsumer(
        bus,
        stream=subjects.WORK_STREAM,
        durable=durable,
        filter_subjects=[subjects.work(pool, lane)],
        decoder=decode_work,
        handler=handler,
        concurrency=concurrency,
        ack_wait_s=ack_wait_s,
        max_deliver=max_deliver,
    )


FEED_EXPIRES_S = 1.0
"""How long a pool's open pull requests live (renewed as they expire)."""


def hand_back_delay_s(expires_s: float = FEED_EXPIRES_S) -> float:
    """How long an item handed back by a stopping ``FeedConsumer`` waits: past its last open pull request."""
    return expires_s + 0.5


class FeedConsumer:
    """A pool consumer read through a continuous pull (``PullFeed``): no pull request per work item.

    Requests for up to ``concurrency`` items stay open on the server, so an item is delivered as
    soon as it is stored and handed to a task at once. Decoding, the handler, acking, retries and
    dead-lettering are ``DurableConsumer.process``'s. ``stop`` hands back what the open requests
    still deliver, delayed past their expiry so it reaches another worker; handlers cancelled on
    stop should hand theirs back as late (``HandlerTasks(nak_delay_s=hand_back_delay_s(expires_s))``).
    """

    def __init__(self, consumer: DurableConsumer[AnyWork], *, expires_s: float = FEED_EXPIRES_S) -> None:
        self.consumer = consumer
        self.expires_s = expires_s
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._feed: PullFeed | None = None

    def stop(self) -> None:
        """Ask for nothing more; ``run`` returns once the items in hand are handled."""
        self._stopping.set()

    async def run(self) -> None:
        """Pull and handle until stopped, up to ``concurrency`` items at once."""
        consumer = self.consumer
        await consumer.ensure()
        feed = self._feed = PullFeed(
            consumer.bus, stream=consumer.stream, durable=consumer.durable, on_message=self._received,
            room=lambda: consumer.concurrency - len(self._running), batch=consumer.concurrency,
            expires_s=self.expires_s,
        )
        await feed.start()
        topping = asyncio.create_task(feed.run())
        try:
            await self._stopping.wait()
            await feed.stop(drain=True)  # what the open requests still deliver is handed back
        finally:
            await cancel_and_wait(topping)
            await feed.stop()
            while self._running:
                await asyncio.gather(*list(self._running), return_exceptions=True)

    async def _received(self, msg: Msg, delivery: Delivery) -> None:
        if self._stopping.is_set():
            with contextlib.suppress(Exception):
                await msg.nak(delay=hand_back_delay_s(self.expires_s))
            return
        task = asyncio.create_task(self.consumer.process(msg))
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        # The feed asks for more by itself as items arrive; it needs a poke only when it may have
        # held back for want of room (more than half the slots were taken).
        busy = len(self._running) > self.consumer.concurrency // 2
        self._running.discard(task)
        if busy and self._feed is not None:
            self._feed.poke()


@contextlib.asynccontextmanager
async def keep_alive(msg: Msg, every_s: float = 5.0) -> AsyncIterator[None]:
    """Tell JetStream the work item is still in progress until the block ends (no redelivery).

    A timer, not a task, waits between reports: a short call costs no task switch.
    """
    loop = asyncio.get_running_loop()
    reports: set[asyncio.Task[None]] = set()

    def beat() -> None:
        nonlocal timer
        report = loop.create_task(_in_progress(msg))
        reports.add(report)
        report.add_done_callback(reports.discard)
        timer = loop.call_later(every_s, beat)

    timer = loop.call_later(every_s, beat)
    try:
        yield
    finally:
        timer.cancel()


async def _in_progress(msg: Msg) -> None:
    """One in-progress report (a lost one only shortens the ack wait)."""
    with contextlib.suppress(Exception):
        await msg.in_progress()


def is_cancellation(event: Event, *, action_id: str | None = None, turn_id: str | None = None) -> bool:
    """True if ``event`` cancels the run, or the given action or turn."""
    if isinstance(event, RunCancelled):
        return True
    if isinstance(event, ActionCancelled):
        return action_id is not None and event.data.action_id == action_id
    if isinstance(event, TurnCancelled):
        return turn_id is not None and event.data.turn_id == turn_id
    if isinstance(event, CancelRequested):
        target = event.data
        if target.target == "run":
            return True
        if target.target == "action":
            return action_id is not None and target.action_id == action_id
        return turn_id is not None and target.turn_id == turn_id
    return False


async def wait_for_cancellation(
    bus: Bus, run_id: str, *, action_id: str | None = None, turn_id: str | None = None
) -> Event:
    """Return the first event (past or future) that cancels the run, the action or the turn."""
    async for event, _seq in bus.watch(subjects.run_events(run_id), from_start=True):
        if is_cancellation(event, action_id=action_id, turn_id=turn_id):
            return event
    raise asyncio.CancelledError  # pragma: no cover - watch only ends when cancelled


class HandlerTasks:
    """The handler calls in flight, so a stopping worker can hand their work items back."""

    def __init__(self, nak_delay_s: float | None = None) -> None:
        """``nak_delay_s``: how long JetStream holds a handed-back item before redelivering it
        (by default longer than a ``FeedConsumer``'s last pull can still receive, so it reaches
        another worker)."""
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closed = False
        self.nak_delay_s = hand_back_delay_s() if nak_delay_s is None else nak_delay_s

    def wrap(self, handler: Callable[[AnyWork, Msg], Awaitable[None]]) -> Callable[[AnyWork, Msg], Awaitable[None]]:
        """``handler``, tracked: cancelled, or called after closing, it naks so another worker takes the item."""

        async def tracked(item: AnyWork, msg: Msg) -> None:
            if self.closed:
                await msg.nak(delay=self.nak_delay_s)
                return
            task = asyncio.current_task()
            assert task is not None
            self.tasks.add(task)
            try:
                await handler(item, msg)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await msg.nak(delay=self.nak_delay_s)
                raise
            finally:
                self.tasks.discard(task)

        return tracked

    async def cancel_all(self) -> None:
        """Refuse new work, cancel every handler call in flight and wait until they are gone."""
        self.closed = True
        await asyncio.gather(*(cancel_and_wait(task) for task in list(self.tasks)))


async def serve_consumer(consumer: DurableConsumer[AnyWork], tasks: HandlerTasks, stop: asyncio.Event) -> None:
    """Run ``consumer`` through a continuous pull until ``stop`` is set, then hand unfinished
    items back (they are redelivered)."""
    feed = FeedConsumer(consumer)
    runner = asyncio.create_task(feed.run())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({runner, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        feed.stop()
        await tasks.cancel_all()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
