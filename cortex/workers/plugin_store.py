"""Plugins applied with ``cortex apply``: loaded from the manifests bucket and followed as they change."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.events import ManifestApplied
from cortex.errors import CortexError
from cortex.manifests.plugin import PluginManifest
from cortex.manifests.store import ManifestStore
from cortex.workers.plugin_host import PluginHost

log = logging.getLogger("cortex.workers.tool")

_STORE_ONLY = ("directory", "source")


def manifest_from_store(value: dict[str, Any]) -> PluginManifest:
    """Rebuild a plugin manifest from what ``cortex apply`` stored (its fields, directory and source)."""
    fields = {k: v for k, v in value.items() if k not in _STORE_ONLY}
    return PluginManifest.model_validate(fields).with_directory(Path(value.get("directory") or "."))


async def applied_plugins(bus: Bus, *, skip: set[str]) -> list[PluginManifest]:
    """Every applied plugin whose name is not in ``skip`` (a broken one is logged and left out)."""
    store = ManifestStore(bus)
    manifests = []
    for name in await store.names("plugin"):
        if name in skip:
            continue
        try:
            manifests.append(manifest_from_store(await store.get("plugin", name, dict)))
        except (CortexError, ValueError) as exc:
            log.error("applied plugin %s cannot be loaded: %s", name, exc)
    return manifests


async def system_stream_position(bus: Bus) -> int:
    """The sequence the next system event will get (take it before loading, so nothing is missed)."""
    return (await bus.js.stream_info(subjects.SYSTEM_STREAM)).state.last_seq + 1


async def follow_applied_plugins(bus: Bus, host: PluginHost, *, skip: set[str], start_seq: int) -> None:
    """Start each plugin applied from ``start_seq`` on (``manifest.applied``, kind plugin) until cancelled."""
    store = ManifestStore(bus)
    filter_subject = subjects.system_event("manifest.applied")
    async for event, _seq in bus.watch(filter_subject, stream=subjects.SYSTEM_STREAM, start_seq=start_seq):
        if not isinstance(event, ManifestApplied) or event.data.kind != "plugin" or event.data.name in skip:
            continue
        try:
            manifest = manifest_from_store(await store.get("plugin", event.data.name, dict))
            if manifest.lane not in host.lanes:
                log.warning("plugin %s asks for lane %s: restart the tool workers to serve it",
                            manifest.name, manifest.lane)
                continue
            await host.add(manifest)
            log.info("now serving applied plugin %s %s", manifest.name, manifest.version)
        except (CortexError, ValueError, OSError) as exc:
            log.error("applied plugin %s cannot be started: %s", event.data.name, exc)
        except asyncio.CancelledError:
            raise
