"""Resolved manifests in the ``cortex_manifests`` KV bucket, so every kernel and worker sees one version.

Keys are ``<kind>.<name>`` (kinds: agent, workflow, relic, plugin); values are the resolved spec as
JSON (for agents, a ``cortex.specs.AgentSpec``).
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from nats.js.errors import KeyNotFoundError

from cortex.bus.client import Bus
from cortex.bus.subjects import KV_MANIFESTS, check_token
from cortex.errors import ManifestError
from cortex.specs import AgentSpec

T = TypeVar("T")

KINDS = ("agent", "workflow", "relic", "plugin")


def manifest_key(kind: str, name: str) -> str:
    """The KV key of a manifest."""
    if kind not in KINDS:
        raise ManifestError(f"unknown manifest kind {kind!r}; expected one of {', '.join(KINDS)}")
    return f"{kind}.{check_token(name, f'{kind} name')}"


class ManifestStore:
    """Read and write resolved manifests in JetStream KV."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def put(self, kind: str, name: str, spec: Any) -> int:
        """Store a resolved spec (a msgspec Struct or JSON-able value); return the KV revision."""
        kv = await self.bus.kv(KV_MANIFESTS)
        return await kv.put(manifest_key(kind, name), msgspec.json.encode(spec))

    async def get(self, kind: str, name: str, type_: type[T]) -> T:
        """Load a spec, decoded as ``type_``; ManifestError if it was never applied."""
        kv = await self.bus.kv(KV_MANIFESTS)
        try:
            entry = await kv.get(manifest_key(kind, name))
        except KeyNotFoundError:
            raise ManifestError(f"no {kind} named {name!r} is applied; run `cortex apply PATH` first") from None
        try:
            return msgspec.json.decode(entry.value or b"", type=type_)
        except msgspec.ValidationError as exc:
            raise ManifestError(f"stored {kind} {name!r} is not valid: {exc}") from None

    async def get_agent(self, name: str) -> AgentSpec:
        """The resolved agent named ``name``."""
        return await self.get("agent", name, AgentSpec)

    async def names(self, kind: str) -> list[str]:
        """Names of every applied manifest of ``kind``, sorted.

        Read from the bucket's stream (subjects with messages, then each key's latest entry)
        rather than with nats-py's ``kv.keys()``, whose watcher can end its initial replay too
        early and return nothing (nats-io/nats.py#842).
        """
        kv = await self.bus.kv(KV_MANIFESTS)
        prefix = f"$KV.{KV_MANIFESTS}.{kind}."
        info = await self.bus.js.stream_info(f"KV_{KV_MANIFESTS}", subjects_filter=f"{prefix}>")
        names = []
        for name in (subject[len(prefix) :] for subject in info.state.subjects or {}):
            try:
                await kv.get(f"{kind}.{name}")
            except KeyNotFoundError:  # deleted or purged (KeyDeletedError is a KeyNotFoundError)
                continue
            names.append(name)
        return sorted(names)

    async def delete(self, kind: str, name: str) -> None:
        """Remove a manifest."""
        kv = await self.bus.kv(KV_MANIFESTS)
        await kv.delete(manifest_key(kind, name))
