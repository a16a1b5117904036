"""``cortex apply``: validate, resolve and store manifests in KV, announcing each change on the bus."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import msgspec
from nats.js.errors import KeyNotFoundError

from cortex.bus.client import Bus
from cortex.bus.events import ManifestApplied, ManifestAppliedData
from cortex.bus.subjects import KV_MANIFESTS
from cortex.errors import ManifestError
from cortex.manifests.loader import LoadedManifest, load_manifests, plugins_by_name, stored_value
from cortex.manifests.store import ManifestStore, manifest_key

Change = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class ApplyResult:
    """What applying one manifest did."""

    kind: str
    name: str
    source: str
    change: Change
    revision: int
    digest: str


def digest(value: Any) -> str:
    """A stable digest of a stored value (sha256 of its key-sorted JSON, 16 hex digits)."""
    return hashlib.sha256(msgspec.json.encode(value, order="sorted")).hexdigest()[:16]


async def resolve_all(loaded: list[LoadedManifest]) -> list[tuple[LoadedManifest, Any]]:
    """Each manifest with the value to store; ManifestError lists every manifest that does not resolve."""
    plugins = plugins_by_name(loaded)
    values, errors = [], []
    for item in loaded:
        try:
            values.append((item, await stored_value(item, plugins)))
        except ManifestError as exc:
            errors.append(str(exc))
    if errors:
        raise ManifestError("\n".join(errors))
    return values


async def _current(bus: Bus, kind: str, name: str) -> tuple[str | None, int]:
    """Digest and revision of what is stored now (None, 0 if nothing is)."""
    kv = await bus.kv(KV_MANIFESTS)
    try:
        entry = await kv.get(manifest_key(kind, name))
    except KeyNotFoundError:  # never stored, or deleted
        return None, 0
    if not entry.value:
        return None, 0
    return digest(msgspec.json.decode(entry.value)), entry.revision or 0


async def apply_manifests(bus: Bus, path: str | Path) -> list[ApplyResult]:
    """Load, validate and resolve everything at ``path``, then store what changed (all or nothing on errors)."""
    resolved = await resolve_all(await load_manifests(path))
    store = ManifestStore(bus)
    results = []
    for item, value in resolved:
        new_digest = digest(value)
        old_digest, revision = await _current(bus, item.kind, item.name)
        change: Change = "unchanged"
        if old_digest != new_digest:
            change = "created" if old_digest is None else "updated"
            revision = await store.put(item.kind, item.name, value)
            await bus.publish_event(
                ManifestApplied(
                    id=f"manifest.{item.kind}.{item.name}.{revision}",
                    time=datetime.now(timezone.utc),
                    data=ManifestAppliedData(kind=item.kind, name=item.name, revision=revision, digest=new_digest),
                )
            )
        results.append(ApplyResult(item.kind, item.name, item.source, change, revision, new_digest))
    return results
