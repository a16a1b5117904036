"""The kernel service: consume decision inputs, decide with the pure decider, publish the decisions.

Any number of kernels share one durable consumer, so the inputs of one run may reach several
kernels at once. Each input is handled by bringing its run up to date: read what the run
stored after the cached state (usually nothing but the input), fold it in decision order
deciding every input (``history.advance``), dispatch the work of the decisions the log lacks
and publish their events with per-run optimistic concurrency. A conflict means the run moved
on: read again and decide again. See docs/kernel.md, "Service".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from nats.aio.msg import Msg

from cortex.aio import cancel_and_wait
from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.consumer import DurableConsumer
from cortex.bus.events import Event, decode
from cortex.errors import BusError, ConcurrencyConflict
from cortex.kernel.cache import RunCache, RunView
from cortex.kernel.decider import DECISION_INPUTS, RunState
from cortex.kernel.history import Advance, advance, is_decision_output
from cortex.kernel.reader import RunChunk, RunReader
from cortex.kernel.timers import TimerService

DURABLE = "kernel"
MAX_CONFLICTS = 50


def input_filters() -> list[str]:
    """The consumer's subject filters: ``cortex.evt.*.<type>`` for every decision input."""
    return [f"{subjects.PREFIX}.evt.*.{event_type}" for event_type in sorted(DECISION_INPUTS)]


@dataclass
class KernelStats:
    """Counters of one kernel process."""

    inputs: int = 0  # input messages handled
    known: int = 0  # inputs already in the cached state (decided by this kernel or another)
    ignored: int = 0  # kernel outputs and run-less events the filter also matches
    reads: int = 0  # reads of a run's new events
    rebuilds: int = 0  # cache misses: a run read from its first event
    decided: int = 0  # inputs whose outputs this kernel published
    outputs: int = 0  # events published
    work: int = 0  # work items dispatched
    conflicts: int = 0  # publishes refused because the run had moved on
    timers_fired: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return asdict(self)


class KeyedLocks:
    """One asyncio lock per key, created on demand and dropped when nobody holds or waits."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold the lock of ``key`` for the block."""
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Kernel:
    """One kernel process: decides the inputs it is handed, for any run, beside any other kernels."""

    def __init__(
        self,
        bus: Bus,
        *,
        cache_size: int = 10_000,
        concurrency: int = 64,
        ack_wait_s: float = 30.0,
        durable: str = DURABLE,
    ) -> None:
        self.bus = bus
        self.cache = RunCache(cache_size)
        self.stats = KernelStats()
        self.reader = RunReader(bus)
        self.ready = asyncio.Event()
        self._locks = KeyedLocks()
        self.consumer: DurableConsumer[Event] = DurableConsumer(
            bus,
            stream=subjects.EVENTS_STREAM,
            durable=durable,
            filter_subjects=input_filters(),
            decoder=decode,
            handler=self.handle,
            concurrency=concurrency,
            batch=min(concurrency, 256),
            ack_wait_s=ack_wait_s,
            max_ack_pending=max(1000, concurrency * 4),
        )
        self.timers = TimerService(bus, self.cache, self.stats, ack_wait_s=ack_wait_s)

    async def run(self) -> None:
        """Consume and decide until ``stop()``; then finish the inputs in hand and return."""
        await self.reader.start()
        await self.consumer.ensure()
        await self.timers.consumer.ensure()
        tasks = [asyncio.create_task(self.consumer.run()), asyncio.create_task(self.timers.run())]
        self.ready.set()
        try:
            await asyncio.gather(*tasks)
        finally:
            await asyncio.gather(*(cancel_and_wait(task) for task in tasks))
            await self.reader.close()

    def stop(self) -> None:
        """Stop pulling inputs; ``run`` returns once the inputs in hand are decided."""
        self.consumer.stop()
        self.timers.stop()

    async def handle(self, event: Event, msg: Msg | None = None) -> None:
        """Decide ``event`` (and any earlier input of its run not decided yet); idempotent."""
        if not event.run_id or is_decision_output(event):
            self.stats.ignored += 1
            return
        self.stats.inputs += 1
        seq = msg.metadata.sequence.stream if msg is not None else None
        async with self._locks.hold(event.run_id):
            view = self.cache.get(event.run_id)
            if view is not None and seq is not None and seq <= view.last_seq:
                self.stats.known += 1
                return
            await self._bring_up_to_date(event.run_id, view, event, seq)

    async def _bring_up_to_date(self, run_id: str, view: RunView | None, event: Event, seq: int | None) -> None:
        """Read the run's new events, decide what the log lacks, publish it; retry on conflicts."""
        if view is None:
            self.stats.rebuilds += 1
            view = RunView(RunState(), 0)
        elif seq is not None and await self.reader.next_seq(run_id, view.last_seq) == seq:
            # The cache is current up to the input itself: decide it without reading it back.
            if await self._decide(run_id, view, RunChunk([event], seq)):
                return
        for _ in range(MAX_CONFLICTS):
            self.stats.reads += 1
            chunk = await self.reader.read_after(run_id, view.last_seq, view.state.seen)
            if await self._decide(run_id, view, chunk):
                return
        self.cache.drop(run_id)
        raise BusError(f"run {run_id}: still conflicting after {MAX_CONFLICTS} attempts")

    async def _decide(self, run_id: str, view: RunView, chunk: RunChunk) -> bool:
        """Fold ``chunk`` onto ``view``, publish what the log lacks; False if the run moved on."""
        result = advance(view.state, chunk.events)
        try:
            last_seq = await self._carry_out(result, chunk.last_seq)
        except ConcurrencyConflict:
            self.stats.conflicts += 1
            return False
        self.cache.put(run_id, RunView(result.state, last_seq))
        return True

    async def _carry_out(self, result: Advance, last_seq: int) -> int:
        """Dispatch the work and publish the missing events; return the run's last sequence.

        Each event is checked against the one before it (the first against ``last_seq``), so
        the returned sequence is exact. The work is dispatched before the last event is stored:
        a decision with all its events in the log has dispatched its work, and one a kernel left
        half-published is made again, work included (work items are deduplicated by message id).
        """
        if not result.missing:
            return last_seq
        work = result.live_work()
        *head, last = result.missing
        dispatched = [self.bus.publish_work(c.pool, c.item, lane=c.lane) for c in work]
        if head:  # the first events and the work travel together; the last event waits for both
            seqs = await _all([self.bus.publish_events(head, expected_last_seq=last_seq), *dispatched])
            last_seq = seqs[0]
        else:
            await _all(dispatched)
        last_seq = await self.bus.publish_event(last, expected_last_seq=last_seq)
        self.stats.decided += result.decisions
        self.stats.outputs += len(result.missing)
        self.stats.work += len(work)
        return last_seq


async def _all(calls: list[Awaitable[Any]]) -> Sequence[Any]:
    """Await publishes concurrently (sent in order); raise the first failure after all settled."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results
