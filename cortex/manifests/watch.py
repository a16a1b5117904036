"""Watch a manifests folder and apply it again after every change (debounced), as ``cortex up`` does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from watchfiles import Change, awatch

from cortex.bus.client import Bus
from cortex.errors import CortexError, ManifestError
from cortex.manifests.apply import ApplyResult, apply_manifests

log = logging.getLogger("cortex.manifests")

Report = Callable[[list[ApplyResult] | CortexError], None]
"""Receives the outcome of each apply: the results, or the error that stopped it."""


def manifest_filter(folder: Path) -> Callable[[Change, str], bool]:
    """A watch filter: only YAML files under ``folder``, outside hidden folders, count as changes."""
    root = folder.resolve()

    def is_manifest(change: Change, path: str) -> bool:
        changed = Path(path).resolve()
        if not changed.is_relative_to(root):
            return False
        relative = changed.relative_to(root)
        return relative.suffix in (".yaml", ".yml") and not any(part.startswith(".") for part in relative.parts)

    return is_manifest


def log_report(outcome: list[ApplyResult] | CortexError) -> None:
    """The default report: log what changed, or why nothing was applied."""
    if isinstance(outcome, CortexError):
        log.error("manifests not applied: %s", outcome)
        return
    for result in outcome:
        if result.change != "unchanged":
            log.warning("%s %s %s (revision %d)", result.change, result.kind, result.name, result.revision)


async def apply_once(bus: Bus, folder: Path, report: Report) -> None:
    """Apply the folder, handing the results or the error to ``report`` (never raises a CortexError)."""
    try:
        outcome: list[ApplyResult] | CortexError = await apply_manifests(bus, folder)
    except CortexError as exc:
        outcome = exc
    report(outcome)


async def watch_and_apply(
    bus: Bus,
    folder: str | Path,
    stop: asyncio.Event,
    debounce_ms: int = 300,
    report: Report = log_report,
) -> None:
    """Apply ``folder`` now, then after every burst of changes to its YAML files, until ``stop`` is set.

    Invalid manifests are reported and nothing is applied until they are fixed; deleting a file
    does not remove what it applied.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ManifestError(f"{folder}: not a folder; cannot watch it for manifests")
    await apply_once(bus, folder, report)
    async for _changes in awatch(
        folder, stop_event=stop, debounce=debounce_ms, step=50, watch_filter=manifest_filter(folder)
    ):
        await apply_once(bus, folder, report)
