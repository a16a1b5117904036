"""The projector: consumes the log and keeps the read models in KV; rebuilds them from zero on request.

Two durable consumers, ``projections`` on ``CORTEX_EVENTS`` (runs, progressions, agents' run
counters) and ``projections-sys`` on ``CORTEX_SYSTEM`` (plugins, agent definitions). Messages are
folded in batches into cached views, the changed views are written, then the batch is acked.
Every view remembers the stream sequence it has folded, so a redelivered message changes nothing.
Run one projector per deployment: the consumer's order is what keeps the views right.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import msgspec
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import FetchTimeoutError, KeyNotFoundError, NotFoundError

from cortex.aio import cancel_and_wait
from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.events import Event, ManifestApplied, PluginHeartbeat, PluginRegistered, PluginUnregistered
from cortex.bus.subjects import KV_AGENTS, KV_MANIFESTS, KV_PLUGINS, KV_PROGRESSIONS, KV_RUNS
from cortex.manifests.store import ManifestStore, manifest_key
from cortex.projections.agents import RUN_LIFECYCLE, define_agent, fold_agent_run
from cortex.projections.plugins import fold_plugin
from cortex.projections.progressions import fold_progression
from cortex.projections.runs import fold_run
from cortex.projections.store import VIEW_TYPES, ViewCache, ViewStore

log = logging.getLogger("cortex.projections")

EVENTS_DURABLE = "projections"
SYSTEM_DURABLE = "projections-sys"
CONSUMERS = ((subjects.EVENTS_STREAM, EVENTS_DURABLE, subjects.EVENTS_WILDCARD),
             (subjects.SYSTEM_STREAM, SYSTEM_DURABLE, subjects.SYSTEM_WILDCARD))
_FETCH_TIMEOUTS = (FetchTimeoutError, NatsTimeout, asyncio.TimeoutError)


def consumer_config(durable: str, filter_subject: str) -> ConsumerConfig:
    """The projector's durable consumer: every message from the first one, explicit acks."""
    return ConsumerConfig(
        durable_name=durable,
        filter_subject=filter_subject,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=60.0,
        max_ack_pending=20_000,
    )


async def _unsubscribe(sub: JetStreamContext.PullSubscription) -> None:
    try:
        await sub.unsubscribe()
    except Exception:  # noqa: BLE001 - best effort: the connection may be closing
        pass


class Projector:
    """Folds the log into the read models in KV (see the module docstring)."""

    def __init__(self, bus: Bus, *, batch: int = 256) -> None:
        self.bus = bus
        self.batch = batch
        self.views = ViewCache(ViewStore(bus))
        self.processed = 0
        self._lock = asyncio.Lock()
        self._subs: dict[str, JetStreamContext.PullSubscription] = {}

    # ---- consumers -------------------------------------------------------------------

    async def ensure(self) -> None:
        """Create the durable consumers if missing and bind a pull subscription to each."""
        for stream, durable, filter_subject in CONSUMERS:
            try:
                await self.bus.js.consumer_info(stream, durable)
            except NotFoundError:
                await self.bus.js.add_consumer(stream, consumer_config(durable, filter_subject))
            old = self._subs.pop(stream, None)
            if old is not None:
                await _unsubscribe(old)
            self._subs[stream] = await self.bus.js.pull_subscribe_bind(durable, stream)

    async def _delete_consumers(self) -> None:
        for stream, durable, _ in CONSUMERS:
            try:
                await self.bus.js.delete_consumer(stream, durable)
            except NotFoundError:
                pass
        await self.close()

    async def pending(self) -> int:
        """Messages not yet folded, over both consumers."""
        total = 0
        for stream, durable, _ in CONSUMERS:
            info = await self.bus.js.consumer_info(stream, durable)
            total += info.num_pending + info.num_ack_pending
        return total

    # ---- running -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Follow both streams until ``stop`` is set."""
        await self.ensure()
        async with self._lock:
            await self.sync_definitions()
        tasks = [asyncio.create_task(self._follow(stream, stop)) for stream, _, _ in CONSUMERS]
        try:
            await asyncio.gather(*tasks)
        finally:
            await asyncio.gather(*(cancel_and_wait(task) for task in tasks))
            await self.close()

    async def close(self) -> None:
        """Unsubscribe from both consumers (they stay on the server for the next start)."""
        subs, self._subs = list(self._subs.values()), {}
        for sub in subs:
            await _unsubscribe(sub)

    async def _follow(self, stream: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            sub = self._subs.get(stream)
            if sub is None:
                await self._recreate()
                continue
            try:
                msgs = await sub.fetch(self.batch, timeout=1.0)
            except _FETCH_TIMEOUTS:
                continue
            except ConnectionClosedError:
                return
            except Exception as exc:  # noqa: BLE001 - the consumer went away (a rebuild, or deleted by hand)
                if self._subs.get(stream) is sub:
                    log.warning("projections consumer on %s failed: %r; recreating it", stream, exc)
                    self._subs.pop(stream, None)
                continue
            async with self._lock:
                if self._subs.get(stream) is not sub:  # a rebuild replaced the consumer meanwhile
                    continue
                try:
                    await self._process(stream, msgs)
                except Exception:  # noqa: BLE001 - KV unavailable: the batch was nak'ed, try again
                    log.exception("writing the read models failed; the batch will be folded again")

    async def _recreate(self) -> None:
        """Bind the consumers again after one went away (pausing a moment if NATS is not there)."""
        async with self._lock:
            try:
                await self.ensure()
            except Exception as exc:  # noqa: BLE001 - keep trying while the server comes back
                log.warning("cannot create the projections consumers: %r", exc)
                await asyncio.sleep(1.0)

    async def catch_up(self) -> int:
        """Fold everything stored so far; return how many messages were folded."""
        if not self._subs:
            await self.ensure()
        before = self.processed
        for stream, durable, _ in CONSUMERS:
            while (info := await self.bus.js.consumer_info(stream, durable)).num_pending:
                try:
                    msgs = await self._subs[stream].fetch(min(self.batch, info.num_pending), timeout=5.0)
                except _FETCH_TIMEOUTS:
                    continue
                await self._process(stream, msgs)
        return self.processed - before

    async def rebuild(self) -> int:
        """Purge the read models, restart both consumers from the first message and fold it all again."""
        async with self._lock:
            await self._delete_consumers()
            for bucket in VIEW_TYPES:
                await self.bus.js.purge_stream(f"KV_{bucket}")
            self.views.clear()
            self.processed = 0
            await self.ensure()
            await self.sync_definitions()
            return await self.catch_up()

    # ---- folding -----------------------------------------------------------------------

    async def _process(self, stream: str, msgs: Sequence[Msg]) -> None:
        """Fold a batch, write the changed views, then ack the batch (nak it if writing failed)."""
        for msg in msgs:
            event = self.bus.decode_or_none(msg)
            if event is None:
                continue
            try:
                if stream == subjects.EVENTS_STREAM:
                    await self._fold_run_event(event, msg.metadata.sequence.stream)
                else:
                    await self._fold_system_event(event, msg.metadata.sequence.stream)
            except Exception:  # noqa: BLE001 - one event the folds cannot take must not stop the projector
                log.exception("cannot fold %s (%s sequence %d)", event.id, stream, msg.metadata.sequence.stream)
        try:
            await self.views.flush()
        except Exception:
            self.views.clear()  # the views in KV are the truth again; the batch is folded once more
            for msg in msgs:
                await msg.nak(delay=1.0)
            raise
        for msg in msgs:
            await msg.ack()
        self.processed += len(msgs)

    async def _fold_run_event(self, event: Event, seq: int) -> None:
        run_id = event.run_id
        run = await self.views.get(KV_RUNS, run_id)
        new_run = fold_run(run, event, seq)
        if new_run is not run:
            self.views.set(KV_RUNS, run_id, new_run)
        progression = await self.views.get(KV_PROGRESSIONS, run_id)
        new_progression = fold_progression(progression, event, seq)
        if new_progression is not progression:
            self.views.set(KV_PROGRESSIONS, run_id, new_progression)
        if new_run is not None and new_run.agent and event.type in RUN_LIFECYCLE:
            agent = await self.views.get(KV_AGENTS, new_run.agent)
            new_agent = fold_agent_run(agent, event, new_run, seq)
            if new_agent is not agent:
                self.views.set(KV_AGENTS, new_run.agent, new_agent)

    async def _fold_system_event(self, event: Event, seq: int) -> None:
        if isinstance(event, ManifestApplied):
            if event.data.kind == "agent":
                await self._define(event.data.name)
            return
        if isinstance(event, PluginRegistered | PluginHeartbeat | PluginUnregistered):
            name = event.data.plugin
            plugin = await self.views.get(KV_PLUGINS, name)
            new_plugin = fold_plugin(plugin, event, seq)
            if new_plugin is not plugin:
                self.views.set(KV_PLUGINS, name, new_plugin)

    async def _define(self, name: str) -> None:
        """Copy an applied agent's definition (as stored now) into its view."""
        kv = await self.views.store.bucket(KV_MANIFESTS)
        try:
            entry = await kv.get(manifest_key("agent", name))
            spec = msgspec.json.decode(entry.value or b"{}")
        except (KeyNotFoundError, msgspec.DecodeError):
            return
        view = await self.views.get(KV_AGENTS, name)
        if view is None or view.revision != entry.revision:
            self.views.set(KV_AGENTS, name, define_agent(view, name, spec, entry.revision or 0))

    async def sync_definitions(self) -> None:
        """Bring every applied agent's definition into the agents model (at start and after a rebuild)."""
        for name in await ManifestStore(self.bus).names("agent"):
            await self._define(name)
        await self.views.flush()
