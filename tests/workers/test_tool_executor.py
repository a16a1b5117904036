"""When the tool executor reads the log before a call: redeliveries and old items do, fresh first deliveries not.

The executor runs against a real nats-server; the deliveries are built by hand so that the
delivery count and the WORK stream sequence (what the rule looks at) are chosen by each test.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.events import (
    ActionCancelled,
    ActionCancelledData,
    ActionCompleted,
    ActionCompletedData,
    ActionDecisionData,
    ActionFailed,
    ActionFailedData,
    ActionStarted,
    ActionStartedData,
    ActionTimedOut,
    Event,
    RunCancelled,
    RunCancelledData,
)
from cortex.workers.action_log import ActionLog, LogReader
from cortex.workers.cancel_watch import CancelWatch
from cortex.workers.plugin_host import PluginHost, load_manifests
from cortex.workers.tool_executor import COMPLETED, SKIPPED, ToolExecutor
from tests.workers import test_tool_pool_tools as kit
from tests.workers.test_tool_pool import action_events, event, of_type, poll, work, write_manifest


@contextlib.asynccontextmanager
async def executor(bus: Bus, tmp_path: Path, cancels: CancelWatch | None = None) -> AsyncIterator[ToolExecutor]:
    """A ToolExecutor over plugin ``kit`` with its log reader and cancel watch started."""
    host = PluginHost(bus, load_manifests([write_manifest(tmp_path, "kit")], builtins=False), worker="w-test",
                      heartbeat_s=0)
    reader, cancels = LogReader(bus), cancels or CancelWatch(bus)
    await reader.start()
    await cancels.start()
    await host.start()
    try:
        yield ToolExecutor(bus, host, ActionLog(reader), cancels, worker="w-test")
    finally:
        await host.close()
        await cancels.close()
        await reader.close()


async def work_position(bus: Bus) -> int:
    """The WORK stream's last sequence."""
    return (await bus.js.stream_info(subjects.WORK_STREAM)).state.last_seq


def delivery(bus: Bus, seq: int, *, delivered: int = 1) -> Msg:
    """A delivery of the WORK stream's message ``seq`` as nats-py hands it over (its acks reach no consumer)."""
    reply = f"$JS.ACK.{subjects.WORK_STREAM}.pool-test.{delivered}.{seq}.{seq}.{time.time_ns()}.0"
    return Msg(_client=bus.nc, subject=subjects.work("tool"), reply=reply, data=b"")


ENDED: list[Callable[[str], Event]] = [
    lambda run_id: event(ActionCompleted, run_id, "w:done", ActionCompletedData(action_id="a1", result=1)),
    lambda run_id: event(ActionFailed, run_id, "w:fail", ActionFailedData(action_id="a1", code="x", error="y")),
    lambda run_id: event(ActionCancelled, run_id, "k:c", ActionCancelledData(action_id="a1", reason="x")),
    lambda run_id: event(ActionTimedOut, run_id, "k:t", ActionDecisionData(action_id="a1", reason="timeout")),
]
ENDED_IDS = ["completed", "failed", "cancelled", "timed_out"]


@pytest.mark.parametrize("ended", ENDED, ids=ENDED_IDS)
async def test_a_redelivery_reads_the_log_and_is_not_run_again(
    bus: Bus, run_id: str, tmp_path: Path, ended: Callable[[str], Event]
) -> None:
    key = f"{run_id}-redelivered"
    async with executor(bus, tmp_path) as tools:
        await bus.publish_event(event(ActionStarted, run_id, "w:start", ActionStartedData(action_id="a1")))
        await bus.publish_event(ended(run_id))
        fresh = await work_position(bus) + 1
        status = await tools.execute(work(run_id, "kit.count", {"key": key}), delivery(bus, fresh, delivered=2))
    assert status == SKIPPED and kit.CALLS[key] == 0


@pytest.mark.parametrize("ended", ENDED, ids=ENDED_IDS)
async def test_an_item_older_than_the_watch_reads_the_log(
    bus: Bus, run_id: str, tmp_path: Path, ended: Callable[[str], Event]
) -> None:
    key = f"{run_id}-old"
    old = await bus.publish_work("tool", work(run_id, "kit.count", {"key": key}))
    await bus.publish_event(ended(run_id))
    async with executor(bus, tmp_path) as tools:
        status = await tools.execute(work(run_id, "kit.count", {"key": key}), delivery(bus, old))
    assert status == SKIPPED and kit.CALLS[key] == 0


async def test_a_fresh_first_delivery_runs_without_reading_the_log(bus: Bus, run_id: str, tmp_path: Path) -> None:
    """Only another message of the same attempt could have left an outcome: an idempotent tool may run again."""
    key = f"{run_id}-fresh"
    async with executor(bus, tmp_path) as tools:
        await bus.publish_event(ENDED[0](run_id))
        fresh = await work_position(bus) + 1
        status = await tools.execute(work(run_id, "kit.count", {"key": key}), delivery(bus, fresh))
    assert status == COMPLETED and kit.CALLS[key] == 1


@pytest.mark.parametrize("stop", ENDED[2:], ids=ENDED_IDS[2:])
async def test_a_stop_signal_heard_before_a_fresh_delivery_is_honoured(
    bus: Bus, run_id: str, tmp_path: Path, stop: Callable[[str], Event]
) -> None:
    key = f"{run_id}-stopped"
    item = work(run_id, "kit.count", {"key": key})
    async with executor(bus, tmp_path) as tools:
        fresh = await work_position(bus) + 1
        await bus.publish_event(stop(run_id))

        async def heard() -> bool:
            return not await tools.cancels.quiet_since(item, fresh)

        await poll(heard, "the stop signal heard")
        status = await tools.execute(item, delivery(bus, fresh))
    assert status == SKIPPED and kit.CALLS[key] == 0


async def test_only_the_stopped_run_or_action_is_not_quiet(bus: Bus, run_id: str, tmp_path: Path) -> None:
    async with executor(bus, tmp_path) as tools:
        fresh = await work_position(bus) + 1
        await bus.publish_event(event(ActionCancelled, run_id, "k:1", ActionCancelledData(action_id="zz", reason="x")))
        await bus.publish_event(event(RunCancelled, "other-" + run_id, "k:2", RunCancelledData(reason="user")))
        cancelled_run = work("other-" + run_id, "kit.count", {"key": "x"})

        async def heard() -> bool:
            return not await tools.cancels.quiet_since(cancelled_run, fresh)

        await poll(heard, "run.cancelled heard")
        assert not await tools.cancels.quiet_since(work(run_id, "kit.count", action_id="zz"), fresh)
        assert await tools.cancels.quiet_since(work(run_id, "kit.count"), fresh)
        assert not await tools.cancels.quiet_since(work(run_id, "kit.count"), fresh - 1)  # older than the watch


async def test_a_watch_that_forgets_moves_its_start_on(bus: Bus, run_id: str, tmp_path: Path) -> None:
    async with executor(bus, tmp_path, CancelWatch(bus, memory=1)) as tools:
        queued = await bus.publish_work("tool", work(run_id, "kit.count", action_id="w1"))
        assert await tools.cancels.quiet_since(work(run_id, "kit.count", action_id="w1"), queued)
        for action_id in ("c1", "c2"):  # the second pushes the first out of a memory of one
            data = ActionCancelledData(action_id=action_id, reason="x")
            await bus.publish_event(event(ActionCancelled, run_id, f"k:{action_id}", data))

        async def heard_second() -> bool:
            return not await tools.cancels.quiet_since(work(run_id, "kit.count", action_id="c2"), queued + 1)

        await poll(heard_second, "the second cancellation heard")
        later = await bus.publish_work("tool", work(run_id, "kit.count", action_id="w2"))
        # w1 might have been c1's item: once c1 is forgotten, only items stored after that count as quiet
        assert not await tools.cancels.quiet_since(work(run_id, "kit.count", action_id="w1"), queued)
        assert await tools.cancels.quiet_since(work(run_id, "kit.count", action_id="w2"), later)


async def test_a_non_idempotent_attempt_another_delivery_started_is_not_run(
    bus: Bus, run_id: str, tmp_path: Path
) -> None:
    """A second message of the attempt (re-published after the duplicate window) finds its start stored."""
    key = f"{run_id}-twice"
    async with executor(bus, tmp_path) as tools:
        await bus.publish_event(event(ActionStarted, run_id, "sched-1:a1:1:started", ActionStartedData(action_id="a1")))
        fresh = await work_position(bus) + 1
        status = await tools.execute(work(run_id, "kit.count_once", {"key": key}), delivery(bus, fresh))
    assert status == SKIPPED and kit.CALLS[key] == 0
    assert [e.id for e in await action_events(bus, run_id)] == ["sched-1:a1:1:started"]


async def test_a_quick_call_reports_its_start_before_its_outcome(bus: Bus, run_id: str, tmp_path: Path) -> None:
    async with executor(bus, tmp_path) as tools:
        fresh = await work_position(bus) + 1
        status = await tools.execute(work(run_id, "kit.count", {"key": run_id}), delivery(bus, fresh))
    events = await action_events(bus, run_id)
    assert status == COMPLETED and [e.type for e in events] == ["action.started", "action.completed"]
    assert of_type(events, "action.started")[0].data.worker == "w-test"
