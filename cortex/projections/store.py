"""Read models in JetStream KV: typed get and put, and an in-memory cache the projector writes back."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

import msgspec
from nats.js.kv import KeyValue
from nats.js.errors import KeyNotFoundError

from cortex.bus.client import Bus
from cortex.bus.subjects import KV_AGENTS, KV_PLUGINS, KV_PROGRESSIONS, KV_RUNS
from cortex.projections.agents import AgentView
from cortex.projections.plugins import PluginView
from cortex.projections.progressions import ProgressionView, compact
from cortex.projections.runs import RunView

log = logging.getLogger("cortex.projections")

VIEW_TYPES: dict[str, type[msgspec.Struct]] = {
    KV_RUNS: RunView,
    KV_PROGRESSIONS: ProgressionView,
    KV_AGENTS: AgentView,
    KV_PLUGINS: PluginView,
}
"""Each projection bucket and the type of its values."""

_MISSING = object()
_HEADROOM = 4096
"""Bytes of a message left for its subject and headers."""


def plain(value: Any) -> Any:
    """A view as JSON values: dicts, lists, strings (times in RFC 3339), numbers."""
    return msgspec.json.decode(msgspec.json.encode(value))


class ViewStore:
    """Typed access to the projection buckets (one ``KeyValue`` handle per bucket, opened once)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._buckets: dict[str, KeyValue] = {}

    async def bucket(self, name: str) -> KeyValue:
        """The KV handle of a projection bucket."""
        if name not in self._buckets:
            self._buckets[name] = await self.bus.kv(name)
        return self._buckets[name]

    async def get(self, bucket: str, key: str) -> Any:
        """The view stored under ``key``, or None (an undecodable value is logged and treated as absent)."""
        kv = await self.bucket(bucket)
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return None
        try:
            return msgspec.json.decode(entry.value or b"", type=VIEW_TYPES[bucket])
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            log.warning("%s/%s is not a valid view (%s); starting it again", bucket, key, exc)
            return None

    async def put(self, bucket: str, key: str, view: msgspec.Struct) -> int:
        """Store a view; return the KV revision (0 if it cannot fit in a message, which is logged).

        A progression too big for the server's message size is stored compacted (texts cut).
        """
        payload = msgspec.json.encode(view)
        limit = self.bus.nc.max_payload - _HEADROOM
        if len(payload) > limit and isinstance(view, ProgressionView):
            payload = msgspec.json.encode(compact(view))
        if len(payload) > limit:
            log.error("%s/%s is %d bytes, more than the server takes (%d); not stored", bucket, key, len(payload), limit)
            return 0
        kv = await self.bucket(bucket)
        return await kv.put(key, payload)


class ViewCache:
    """Views read on a miss, changed in memory and written back by ``flush`` (one projector only)."""

    def __init__(self, store: ViewStore, limit: int = 5000) -> None:
        self.store = store
        self.limit = limit
        self._views: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._dirty: set[tuple[str, str]] = set()

    async def get(self, bucket: str, key: str) -> Any:
        """The current view of ``key`` (None if there is none yet)."""
        slot = (bucket, key)
        view = self._views.get(slot, _MISSING)
        if view is _MISSING:
            view = await self.store.get(bucket, key)
            self._views[slot] = view
        self._views.move_to_end(slot)
        return view

    def set(self, bucket: str, key: str, view: Any) -> None:
        """Replace a view; it is written at the next flush."""
        self._views[(bucket, key)] = view
        self._views.move_to_end((bucket, key))
        self._dirty.add((bucket, key))

    async def flush(self) -> int:
        """Write every changed view; return how many were written."""
        dirty, self._dirty = self._dirty, set()
        await asyncio.gather(*(self.store.put(b, k, self._views[(b, k)]) for b, k in sorted(dirty)))
        self._evict()
        return len(dirty)

    def clear(self) -> None:
        """Forget everything (after the buckets were purged)."""
        self._views.clear()
        self._dirty.clear()

    def _evict(self) -> None:
        while len(self._views) > self.limit:
            slot = next(iter(self._views))
            if slot in self._dirty:
                break
            del self._views[slot]
