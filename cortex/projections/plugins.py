"""The plugins read model: registered plugins, their tools and permissions, and the workers serving them.

A worker is ``live`` while its heartbeats arrive, ``stale`` once the last one is older than
``STALE_AFTER`` heartbeat intervals (computed when read, see ``worker_status``), and ``stopped``
after ``plugin.unregistered``. Workers unseen for ``FORGET_AFTER_S`` are dropped.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec

from cortex.bus.events import Event, PluginHeartbeat, PluginRegistered, PluginUnregistered

HEARTBEAT_INTERVAL_S = float(os.environ.get("CORTEX_HEARTBEAT_INTERVAL", "10"))
"""How often tool workers announce themselves (``CORTEX_HEARTBEAT_INTERVAL``, default 10 s)."""
STALE_AFTER = 3
"""Missed heartbeat intervals after which a worker is shown as stale."""
FORGET_AFTER_S = 24 * 3600.0


class ToolSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A tool as the plugins view lists it."""

    name: str
    description: str = ""
    pool: str = "tool"
    lane: str | None = None
    side_effects: str = "read_only"
    idempotent: bool = True


class WorkerView(msgspec.Struct, frozen=True, kw_only=True):
    """One worker process serving a plugin."""

    worker_id: str
    version: str = ""
    registered_at: datetime | None = None
    last_heartbeat: datetime | None = None
    stopped_at: datetime | None = None


class PluginView(msgspec.Struct, frozen=True, kw_only=True):
    """One plugin (key: its name in ``cortex_plugins``)."""

    name: str
    version: str = ""
    tools: tuple[ToolSummary, ...] = ()
    permissions: dict[str, Any] = msgspec.field(default_factory=dict)
    workers: dict[str, WorkerView] = msgspec.field(default_factory=dict)
    updated_at: datetime | None = None
    seq: int = 0


def fold_plugin(view: PluginView | None, event: Event, seq: int) -> PluginView | None:
    """Apply one plugin lifecycle event (``CORTEX_SYSTEM`` sequence ``seq``); repeats change nothing."""
    if not isinstance(event, PluginRegistered | PluginHeartbeat | PluginUnregistered):
        return view
    if view is not None and seq <= view.seq:
        return view
    data = event.data
    base = view or PluginView(name=data.plugin)
    worker = base.workers.get(data.worker_id) or WorkerView(worker_id=data.worker_id, registered_at=event.time)
    if isinstance(event, PluginUnregistered):
        worker = msgspec.structs.replace(worker, stopped_at=event.time)
    else:
        registered = event.time if isinstance(event, PluginRegistered) else worker.registered_at
        worker = msgspec.structs.replace(
            worker, version=data.version, registered_at=registered, last_heartbeat=event.time, stopped_at=None
        )
    horizon = event.time - timedelta(seconds=FORGET_AFTER_S)
    workers = {
        wid: w for wid, w in base.workers.items() if wid != data.worker_id and _last_seen(w) >= horizon
    }
    workers[data.worker_id] = worker
    tools = tuple(
        ToolSummary(
            name=t.name, description=t.description, pool=t.pool, lane=t.lane,
            side_effects=t.side_effects, idempotent=t.idempotent,
        )
        for t in data.tools
    )
    keep_definition = isinstance(event, PluginUnregistered) and base.tools
    return msgspec.structs.replace(
        base,
        version=base.version if keep_definition else data.version or base.version,
        tools=base.tools if keep_definition else tools or base.tools,
        permissions=base.permissions if keep_definition else dict(data.permissions) or base.permissions,
        workers=dict(sorted(workers.items())),
        updated_at=event.time,
        seq=seq,
    )


def _last_seen(worker: WorkerView) -> datetime:
    return worker.stopped_at or worker.last_heartbeat or worker.registered_at or datetime.min.replace(tzinfo=timezone.utc)


def worker_status(worker: WorkerView, now: datetime, interval_s: float = HEARTBEAT_INTERVAL_S) -> str:
    """``live``, ``stale`` (no heartbeat for ``STALE_AFTER`` intervals) or ``stopped``."""
    if worker.stopped_at is not None:
        return "stopped"
    last = worker.last_heartbeat or worker.registered_at
    if last is None or (now - last).total_seconds() > STALE_AFTER * interval_s:
        return "stale"
    return "live"


def plugin_summary(view: PluginView, now: datetime, interval_s: float = HEARTBEAT_INTERVAL_S) -> dict[str, Any]:
    """The view as plain JSON-ready values, each worker with its status, plus live worker counts."""
    out: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(view))
    statuses = {wid: worker_status(w, now, interval_s) for wid, w in view.workers.items()}
    for wid, status in statuses.items():
        out["workers"][wid]["status"] = status
    out["live_workers"] = sum(1 for s in statuses.values() if s == "live")
    out["status"] = "live" if out["live_workers"] else ("stale" if "stale" in statuses.values() else "stopped")
    return out
