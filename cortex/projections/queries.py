"""Queries over the read models in KV, answered as plain JSON-ready dicts (for HTTP, NATS and the CLI)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import msgspec
from nats.js.kv import KeyValue

from cortex.bus.client import Bus
from cortex.bus.subjects import KV_AGENTS, KV_PLUGINS, KV_PROGRESSIONS, KV_RUNS, check_token
from cortex.errors import ConfigError
from cortex.projections.plugins import HEARTBEAT_INTERVAL_S, plugin_summary
from cortex.projections.runs import RunView
from cortex.projections.store import VIEW_TYPES, ViewStore, plain

RUN_STATUSES = ("requested", "running", "completed", "failed", "cancelled")
MAX_LIMIT = 1000


async def latest_values(kv: KeyValue) -> list[bytes]:
    """The current value of every key of a bucket (deleted keys left out), in one ordered pass."""
    watcher = await kv.watchall()
    values: list[bytes] = []
    try:
        async for entry in watcher:
            if entry is None:  # the end of the stored values
                break
            if entry.operation is None and entry.value:
                values.append(entry.value)
    finally:
        await watcher.stop()
    return values


def _sort_time(run: RunView) -> datetime:
    return run.created_at or run.updated_at or datetime.min.replace(tzinfo=timezone.utc)


class ProjectionQueries:
    """The read side: runs, progressions, agents and plugins as dicts; None where a key is absent."""

    def __init__(self, bus: Bus, *, heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S) -> None:
        self.store = ViewStore(bus)
        self.heartbeat_interval_s = heartbeat_interval_s

    async def _all(self, bucket: str) -> list[Any]:
        values = await latest_values(await self.store.bucket(bucket))
        decoder = msgspec.json.Decoder(VIEW_TYPES[bucket])
        views = []
        for value in values:
            try:
                views.append(decoder.decode(value))
            except (msgspec.ValidationError, msgspec.DecodeError):
                continue  # a value of another version: the next rebuild rewrites it
        return views

    async def list_runs(self, limit: int = 50, agent: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """The newest runs first (at most ``limit``), optionally of one agent and/or in one status.

        Entries leave out ``response`` (``get_run`` has it).
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise ConfigError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
        if status is not None and status not in RUN_STATUSES:
            raise ConfigError(f"unknown status {status!r}; expected one of {', '.join(RUN_STATUSES)}")
        runs = [
            run for run in await self._all(KV_RUNS)
            if (agent is None or run.agent == agent) and (status is None or run.status == status)
        ]
        runs.sort(key=_sort_time, reverse=True)
        out = []
        for run in runs[:limit]:
            item = plain(run)
            item.pop("response", None)
            out.append(item)
        return out

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        """One run, or None if the projection has never seen it."""
        view = await self.store.get(KV_RUNS, check_token(run_id))
        return None if view is None else plain(view)

    async def get_progression(self, run_id: str) -> dict[str, Any] | None:
        """The ordered steps of one run, or None if the projection has never seen it."""
        view = await self.store.get(KV_PROGRESSIONS, check_token(run_id))
        return None if view is None else plain(view)

    async def list_agents(self) -> list[dict[str, Any]]:
        """Every agent (applied, or seen in a run), by name; ``active_runs`` counted in ``active``."""
        out = []
        for view in sorted(await self._all(KV_AGENTS), key=lambda v: v.name):
            item = plain(view)
            item["active"] = len(view.active_runs)
            out.append(item)
        return out

    async def list_plugins(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Every plugin seen, by name, each worker with its status (live, stale or stopped) as of ``now``."""
        now = now or datetime.now(timezone.utc)
        views = sorted(await self._all(KV_PLUGINS), key=lambda v: v.name)
        return [plugin_summary(view, now, self.heartbeat_interval_s) for view in views]
