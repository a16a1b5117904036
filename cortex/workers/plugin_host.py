"""The plugins one tool worker serves: load manifests, start runtimes, route tool names, announce them.

While it runs, a host publishes ``plugin.registered`` for each plugin once its runtime is up,
``plugin.heartbeat`` every ``heartbeat_s`` seconds and ``plugin.unregistered`` when it closes,
all as system events (``cortex.sys.plugin.*``, run_id ""), each naming this worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cortex.adapters.tools import ToolRuntime, load_runtime
from cortex.adapters.tools.builtin import builtin_manifests
from cortex.bus.client import Bus
from cortex.bus.events import Event, PluginData, PluginHeartbeat, PluginRegistered, PluginUnregistered
from cortex.errors import ConfigError
from cortex.manifests.plugin import PluginManifest, load_plugin_manifest
from cortex.specs import ToolSpec
from cortex.workers.base import utcnow

log = logging.getLogger("cortex.workers.tool")

POOL = "tool"
MANIFEST_SUFFIXES = (".yaml", ".yml")


def manifest_paths(path: str | Path) -> list[Path]:
    """The manifests at ``path``: the file itself, or a folder's ``*.yaml`` and ``*/plugin.yaml``."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ConfigError(f"no plugin manifest or folder at {path}")
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
    found += sorted(p / f"plugin{s}" for p in path.iterdir() if p.is_dir() for s in MANIFEST_SUFFIXES
                    if (p / f"plugin{s}").is_file())
    if not found:
        raise ConfigError(f"no plugin manifests (*.yaml, */plugin.yaml) in {path}")
    return found


def load_manifests(paths: Iterable[str | Path], *, builtins: bool = True) -> list[PluginManifest]:
    """The built-in manifests (unless ``builtins`` is False) and those at ``paths``; names are unique."""
    manifests = builtin_manifests() if builtins else []
    for path in paths:
        manifests.extend(load_plugin_manifest(p) for p in manifest_paths(path))
    seen: set[str] = set()
    for manifest in manifests:
        if manifest.name in seen:
            raise ConfigError(f"two plugins are named {manifest.name!r}; plugin names must be unique")
        if manifest.pool != POOL:
            raise ConfigError(
                f"plugin {manifest.name} asks for pool {manifest.pool!r}; the tool worker serves pool "
                f"{POOL!r} and its lanes (use lane: <name> for a plugin's own pool)"
            )
        seen.add(manifest.name)
    if not manifests:
        raise ConfigError("no plugins to serve: give --plugins PATH or keep the built-in plugins")
    return manifests


@dataclass(frozen=True)
class Route:
    """Where a tool runs: its plugin's runtime and its resolved spec."""

    runtime: ToolRuntime
    spec: ToolSpec


class PluginHost:
    """Starts the runtimes of a set of plugins, routes tool names to them and announces them."""

    def __init__(
        self, bus: Bus, manifests: Sequence[PluginManifest], *, worker: str, heartbeat_s: float = 10.0
    ) -> None:
        self.bus = bus
        self.manifests = list(manifests)
        self.worker = worker
        self.heartbeat_s = heartbeat_s
        self._runtimes: list[ToolRuntime] = []
        self._routes: dict[str, Route] = {}
        self._beats = 0
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def lanes(self) -> list[str | None]:
        """The lanes of ``cortex.work.tool`` to consume: None (the pool's own subject) and plugin lanes."""
        return sorted({m.lane for m in self.manifests}, key=lambda lane: lane or "")

    @property
    def tools(self) -> list[ToolSpec]:
        """Every tool served, by name."""
        return [self._routes[name].spec for name in sorted(self._routes)]

    def route(self, tool: str) -> Route | None:
        """The runtime and spec of ``tool`` (``<plugin>.<tool>``), or None if no plugin here offers it."""
        return self._routes.get(tool)

    async def start(self) -> None:
        """Start every runtime (all or none), publish ``plugin.registered`` and start heartbeats."""
        try:
            for manifest in self.manifests:
                runtime = load_runtime(manifest)
                await runtime.start()
                self._runtimes.append(runtime)
                self._routes.update((spec.name, Route(runtime, spec)) for spec in runtime.tools())
        except BaseException:
            await self._close_runtimes()
            raise
        await self._announce(PluginRegistered, "registered", with_tools=True)
        if self.heartbeat_s > 0:
            self._heartbeat = asyncio.create_task(self._beat())

    async def add(self, manifest: PluginManifest) -> None:
        """Start one more plugin (replacing a running one of the same name) and announce it."""
        runtime = load_runtime(manifest)
        await runtime.start()
        old = next((r for r in self._runtimes if r.manifest.name == manifest.name), None)
        if old is not None:
            self._runtimes.remove(old)
            self._routes = {name: route for name, route in self._routes.items() if route.runtime is not old}
            self.manifests = [m for m in self.manifests if m.name != manifest.name]
            await old.close()
        self._runtimes.append(runtime)
        self.manifests.append(manifest)
        self._routes.update((spec.name, Route(runtime, spec)) for spec in runtime.tools())
        await self._announce(PluginRegistered, f"registered:{manifest.version}", with_tools=True, only=runtime)

    async def close(self) -> None:
        """Stop heartbeats, publish ``plugin.unregistered`` and close the runtimes."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self._runtimes:
            try:
                await self._announce(PluginUnregistered, "unregistered")
            except Exception as exc:  # noqa: BLE001 - closing goes on: the heartbeats stop anyway
                log.warning("could not announce that %s stopped serving its plugins: %s", self.worker, exc)
        await self._close_runtimes()

    async def _close_runtimes(self) -> None:
        for runtime in reversed(self._runtimes):
            try:
                await runtime.close()
            except Exception:  # noqa: BLE001 - one runtime failing to close must not keep the others open
                log.exception("closing plugin %s failed", runtime.manifest.name)
        self._runtimes.clear()
        self._routes.clear()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            self._beats += 1
            try:
                await self._announce(PluginHeartbeat, f"heartbeat:{self._beats}")
            except Exception as exc:  # noqa: BLE001 - a missed heartbeat is logged, never fatal
                log.warning("plugin heartbeat of %s not published: %s", self.worker, exc)

    async def _announce(
        self, cls: type[Event], suffix: str, *, with_tools: bool = False, only: ToolRuntime | None = None
    ) -> None:
        """Publish one lifecycle event per plugin (or for ``only``), ids ``<worker>:<plugin>:<suffix>``."""
        now = utcnow()
        events = []
        for runtime in [only] if only is not None else self._runtimes:
            manifest = runtime.manifest
            data = PluginData(
                plugin=manifest.name,
                worker_id=self.worker,
                version=manifest.version,
                tools=tuple(runtime.tools()) if with_tools else (),
                permissions=manifest.permissions.model_dump(mode="json") if with_tools else {},
            )
            events.append(cls(id=f"{self.worker}:{manifest.name}:{suffix}", time=now, data=data))
        await self.bus.publish_pipelined(events)
