"""Plugins applied with `cortex apply` are served by tool workers, at start and when applied later."""

from __future__ import annotations

from pathlib import Path

from cortex.bus.client import Bus
from cortex.bus.events import ActionCompleted
from cortex.manifests.apply import apply_manifests
from tests.workers.test_tool_pool import REPO, needs_bwrap, outcome, poll, tool_pool, work, wordstats_out  # noqa: F401

WORDSTATS = REPO / "examples" / "plugins" / "wordstats" / "plugin.yaml"


async def top_words(bus: Bus, run_id: str) -> ActionCompleted:
    await bus.publish_work("tool", work(run_id, "wordstats.top_words", {"text": "b a b", "n": 1}))
    done = await outcome(bus, run_id, timeout_s=30)
    assert isinstance(done, ActionCompleted), done
    return done


@needs_bwrap
async def test_plugin_applied_before_the_worker_starts_is_served(
    bus: Bus, run_id: str, wordstats_out: Path
) -> None:
    await apply_manifests(bus, WORDSTATS)
    async with tool_pool(bus):
        done = await top_words(bus, run_id)
    assert done.data.result["words"] == [{"word": "b", "count": 2}]


@needs_bwrap
async def test_plugin_applied_while_the_worker_runs_is_served(
    bus: Bus, run_id: str, wordstats_out: Path
) -> None:
    async with tool_pool(bus):
        await apply_manifests(bus, WORDSTATS)
        registered = await poll(lambda: _registered(bus), "wordstats registered")
        assert registered
        done = await top_words(bus, run_id)
    assert done.data.result["total"] == 3


async def _registered(bus: Bus) -> bool:
    from cortex.bus import subjects

    async for event, _ in bus.read(subjects.system_event("plugin.registered"), stream=subjects.SYSTEM_STREAM):
        if event.data.plugin == "wordstats":
            return True
    return False
