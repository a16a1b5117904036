"""The kernel service: consume decision inputs, decide with the pure decider, publish the decisions.

Any number of kernels run at once, and the inputs of one run may reach several of them. Each
input is handled by bringing its run up to date: unless the kernel knows its cached state is
current (it was handed every input of the run, in order, since the state was read: see
``Trust``), read what the run stored after the cached state, fold it in decision order
deciding every input (``history.advance``), dispatch the work of the decisions the log lacks
and publish their events with per-run optimistic concurrency. A conflict means the run moved
on: read again and decide again. See docs/kernel.md, "Service".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass

from nats.aio.msg import Msg

from cortex.aio import cancel_and_wait
from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.consumer import DurableConsumer, dead_letter
from cortex.bus.events import Event, decode
from cortex.bus.feed import Delivery, PullFeed
from cortex.bus.streams import KERNEL_PARTITIONS, KERNEL_STREAM, kernel_partition_subject
from cortex.bus.messages import Message, event_message, work_message
from cortex.errors import BusError, ConcurrencyConflict, MalformedEvent
from cortex.kernel.cache import RunCache, RunView
from cortex.kernel.decider import RunState
from cortex.kernel.history import Advance, advance, is_decision_output
from cortex.kernel.partitions import Partitions
from cortex.kernel.reader import RunChunk, RunReader
from cortex.kernel.timers import TimerService

log = logging.getLogger("cortex.kernel")

DURABLE = "kernel"
MAX_CONFLICTS = 50
HDR_STREAM_SOURCE = "Nats-Stream-Source"


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
    partitions: int = 0  # partitions of the input stream consumed now

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


class Trust:
    """Knows when a run's cached state is current without reading the run back.

    A consumer with one client delivers in stream order, and its delivery sequence counts
    every delivery (redeliveries too). While the deliveries a kernel gets from a consumer are
    contiguous, it was handed every input of the consumer's runs stored meanwhile, in order:
    a state read from the log (or kept current) during that span covers every input before
    the next one it is handed. A gap (another client took a delivery, the consumer was
    recreated, the feed restarted) starts a new epoch; a state is trusted only in the epoch
    it was read or kept current in, and only for a first delivery.
    """

    _epochs = itertools.count(1)

    def __init__(self) -> None:
        self.epoch = next(self._epochs)
        self._last: int | None = None

    def delivered(self, delivery: Delivery) -> int | None:
        """The epoch a delivery is trusted in, or None (a redelivery, or the first after a gap)."""
        contiguous = self._last is not None and delivery.delivery_seq == self._last + 1
        self._last = delivery.delivery_seq
        if not contiguous:
            self.epoch = next(self._epochs)
        return self.epoch if delivery.delivered == 1 else None


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
        self.concurrency = max(1, concurrency)
        self.max_deliver = 5
        self._locks = KeyedLocks()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._feeds: dict[int, tuple[PullFeed, asyncio.Task[None]]] = {}
        self._draining: set[asyncio.Task[None]] = set()
        self.consumers: list[DurableConsumer[Event]] = [
            DurableConsumer(
                bus,
                stream=KERNEL_STREAM,
                durable=f"{durable}-p{partition:02d}",
                filter_subjects=[kernel_partition_subject(partition)],
                decoder=decode,
                handler=self.handle,
                ack_wait_s=ack_wait_s,
                max_deliver=self.max_deliver,
                max_ack_pending=max(1000, self.concurrency * 4),
            )
            for partition in range(KERNEL_PARTITIONS)
        ]
        self.partitions = Partitions(bus, uuid.uuid4().hex[:12], KERNEL_PARTITIONS, self._assign)
        self.timers = TimerService(bus, self.cache, self.stats, ack_wait_s=ack_wait_s)

    async def run(self) -> None:
        """Consume and decide until ``stop()``; then finish the inputs in hand and return."""
        await self.reader.start()
        await self.bus.acks.start()
        await asyncio.gather(*(consumer.ensure() for consumer in self.consumers), self.timers.consumer.ensure())
        tasks = [asyncio.create_task(self.timers.run())]
        try:
            await self.partitions.tick()
            tasks.append(asyncio.create_task(self.partitions.run()))
            self.ready.set()
            await self._stopping.wait()
            await cancel_and_wait(tasks.pop())
            await self.partitions.leave()
            await self._assign(set())
            await asyncio.gather(*list(self._draining))
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await tasks[0]
        finally:
            await asyncio.gather(*(cancel_and_wait(task) for task in [*tasks, *self._draining]))
            for feed, task in [self._feeds.pop(p) for p in list(self._feeds)]:
                await feed.stop()
                await cancel_and_wait(task)
            await self.reader.close()

    def stop(self) -> None:
        """Stop pulling inputs; ``run`` returns once the inputs in hand are decided."""
        self._stopping.set()
        self.timers.stop()

    async def _assign(self, partitions: set[int]) -> None:
        """Consume exactly ``partitions``: start feeds for new ones, drain and stop the ones given up."""
        dropped = [self._feeds.pop(partition) for partition in sorted(set(self._feeds) - partitions)]
        if dropped:
            task = asyncio.create_task(self._drop(dropped))
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)
        batch = max(16, self.concurrency // 4)
        for partition in sorted(partitions - set(self._feeds)):
            consumer = self.consumers[partition]
            trust = Trust()
            feed = PullFeed(
                self.bus, stream=consumer.stream, durable=consumer.durable,
                on_message=lambda msg, delivery, trust=trust: self._received(msg, delivery, trust),
                room=lambda: self.concurrency - self._in_flight, batch=batch,
            )
            await feed.start()
            self._feeds[partition] = (feed, asyncio.create_task(feed.run()))
        self.stats.partitions = len(self._feeds)

    async def _drop(self, feeds: list[tuple[PullFeed, asyncio.Task[None]]]) -> None:
        """Stop feeds given up: take what their open requests still deliver, then unsubscribe."""
        await asyncio.gather(*(feed.stop(drain=True) for feed, _ in feeds))
        await asyncio.gather(*(cancel_and_wait(task) for _, task in feeds))

    async def _received(self, msg: Msg, delivery: Delivery, trust: Trust) -> None:
        """Take one delivered input (in delivery order): note its trust, decide it in a task."""
        epoch = trust.delivered(delivery)
        self._in_flight += 1
        task = asyncio.create_task(self._process(msg, delivery, epoch))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight -= 1
        for feed, _ in self._feeds.values():
            feed.poke()

    async def _process(self, msg: Msg, delivery: Delivery, epoch: int | None) -> None:
        """Decode, decide, ack; a failure is retried later (and dead-lettered after ``max_deliver``)."""
        seq = origin_seq(msg)
        try:
            event = decode(msg.data, msg.subject, seq)
        except MalformedEvent as exc:
            log.warning("%s; recorded on %s", exc, subjects.dead_letter(KERNEL_STREAM))
            await dead_letter(self.bus, KERNEL_STREAM, msg, str(exc))
            await msg.term()
            return
        try:
            await self._handle(event, seq, epoch if seq is not None else None)
        except Exception as exc:  # noqa: BLE001 - one input must not stop the others
            reason = f"deciding {msg.subject} (events stream sequence {seq}) failed: {exc!r}"
            if delivery.delivered >= self.max_deliver:
                log.error("%s; giving up after %d deliveries", reason, delivery.delivered)
                await dead_letter(self.bus, KERNEL_STREAM, msg, reason)
                await msg.term()
            else:
                log.warning("%s; will retry", reason)
                await msg.nak(delay=min(0.2 * 2 ** delivery.delivered, 5.0))
            return
        await msg.ack()

    async def handle(self, event: Event, msg: Msg | None = None) -> None:
        """Decide ``event`` (and any earlier input of its run not decided yet); idempotent."""
        seq = msg.metadata.sequence.stream if msg is not None else None
        await self._handle(event, seq, None)

    async def _handle(self, event: Event, seq: int | None, epoch: int | None) -> None:
        """Decide an input at stream sequence ``seq``; ``epoch`` when the delivery is trusted."""
        if not event.run_id or is_decision_output(event):
            self.stats.ignored += 1
            return
        self.stats.inputs += 1
        async with self._locks.hold(event.run_id):
            view = self.cache.get(event.run_id)
            if view is not None and seq is not None and seq <= view.last_seq:
                self.stats.known += 1
                return
            try:
                await self._bring_up_to_date(event.run_id, view, event, seq, epoch)
            except BaseException:
                self.cache.drop(event.run_id)  # a later input of the run must not trust a state without this one
                raise

    async def _bring_up_to_date(
        self, run_id: str, view: RunView | None, event: Event, seq: int | None, epoch: int | None
    ) -> None:
        """Read the run's new events, decide what the log lacks, publish it; retry on conflicts."""
        if view is None:
            self.stats.rebuilds += 1
            view = RunView(RunState(), 0)
        elif seq is not None and epoch is not None and view.epoch == epoch:
            # Every input before this one is in the cached state: decide it without reading.
            if await self._decide(run_id, view, RunChunk([event], seq), epoch):
                return
        for _ in range(MAX_CONFLICTS):
            self.stats.reads += 1
            chunk = await self.reader.read_after(run_id, view.last_seq, view.state.seen)
            if await self._decide(run_id, view, chunk, epoch):
                return
        self.cache.drop(run_id)
        raise BusError(f"run {run_id}: still conflicting after {MAX_CONFLICTS} attempts")

    async def _decide(self, run_id: str, view: RunView, chunk: RunChunk, epoch: int | None) -> bool:
        """Fold ``chunk`` onto ``view``, publish what the log lacks; False if the run moved on."""
        result = advance(view.state, chunk.events)
        try:
            last_seq = await self._carry_out(result, chunk.last_seq)
        except ConcurrencyConflict:
            self.stats.conflicts += 1
            return False
        self.cache.put(run_id, RunView(result.state, last_seq, epoch))
        return True

    async def _carry_out(self, result: Advance, last_seq: int) -> int:
        """Dispatch the work and publish the missing events; return the run's last sequence.

        Each event is checked against the one before it (the first against ``last_seq``), so
        the returned sequence is exact. The work is dispatched before the last event is stored:
        a decision with all its events in the log has dispatched its work, and one a kernel left
        half-published is made again, work included (work items are deduplicated by message id).
        The first event and the work go out together; each later event once the one before it
        is acknowledged.
        """
        if not result.missing:
            return last_seq
        work = result.live_work()
        events = result.missing
        group: list[Message] = [work_message(c.pool, c.item, c.lane) for c in work]
        first = 0
        if len(events) > 1 or not group:  # the last event waits for the work's acks
            group.insert(0, event_message(events[0], last_seq))
            first = 1
        seqs = await self.bus.publish_batch(group, ack_timeout_s=2.0)
        if first:
            last_seq = seqs[0]
        for event in events[first:]:
            (last_seq,) = await self.bus.publish_batch([event_message(event, last_seq)], ack_timeout_s=2.0)
        self.stats.decided += result.decisions
        self.stats.outputs += len(events)
        self.stats.work += len(work)
        return last_seq


def origin_seq(msg: Msg) -> int | None:
    """The events stream sequence of a sourced input (``Nats-Stream-Source: CORTEX_EVENTS <seq> ...``)."""
    source = (msg.headers or {}).get(HDR_STREAM_SOURCE, "")
    parts = source.split(" ", 2)
    if len(parts) < 2 or parts[0] != subjects.EVENTS_STREAM or not parts[1].isdigit():
        return None
    return int(parts[1])
