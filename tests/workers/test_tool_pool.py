"""The tool pool against a real nats-server; the tests play the kernel by publishing ActionWork."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from nats.js.api import StreamConfig

from cortex.adapters.tools.builtin import builtin_manifests
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
    ActionScheduled,
    ActionStarted,
    ActionStartedData,
    ActionTimedOut,
    Event,
    RunCancelled,
    RunCancelledData,
    encode,
)
from cortex.bus.work import ActionWork
from cortex.specs import ToolSpec
from cortex.workers.action_log import LogReader, attempt_record
from cortex.workers.tool_executor import OUTCOME_UNKNOWN_MESSAGE
from cortex.workers.tool_pool import add_arguments, serve
from tests.support.nats import NatsProcess
from tests.workers import test_tool_pool_tools as kit

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
TOOLS_MODULE = "tests.workers.test_tool_pool_tools"


# ---- helpers ------------------------------------------------------------------------


def write_manifest(directory: Path, name: str, **extra: str) -> Path:
    """A system python plugin over the test tools module."""
    lines = [f"name: {name}", 'version: "1.0"', "kind: system", "runtime: python", f"module: {TOOLS_MODULE}"]
    lines += [f"{key}: {value}" for key, value in extra.items()]
    path = directory / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def testkit(tmp_path: Path) -> Path:
    """The manifest of plugin ``kit`` (the test tools)."""
    return write_manifest(tmp_path, "kit")


def work(run_id: str, name: str, params: Any = None, *, action_id: str = "a1", attempt: int = 1,
         causation_id: str = "sched-1", timeout_s: float = 30.0, tool: ToolSpec | None = None) -> ActionWork:
    """A work item as the kernel dispatches it."""
    return ActionWork(
        run_id=run_id, causation_id=causation_id, correlation_id="corr", action_id=action_id, type="tool",
        name=name, params=params, attempt=attempt, timeout_s=timeout_s, tool=tool,
    )


@contextlib.asynccontextmanager
async def tool_pool(bus: Bus, *argv: str) -> AsyncIterator[None]:
    """``cortex worker tool ARGV`` served in this process until the block ends."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(list(argv))
    stop = asyncio.Event()
    task = asyncio.create_task(serve(bus, args, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def poll(check: Callable[[], Any], what: str, timeout_s: float = 15.0, every_s: float = 0.05) -> Any:
    """Await ``check()`` until it returns something truthy; fail naming ``what`` after the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s}s")
        await asyncio.sleep(every_s)


async def action_events(bus: Bus, run_id: str) -> list[Event]:
    """The run's stored ``action.*`` events, in order."""
    return [e for e in (await bus.read_run(run_id)).events if e.type.startswith("action.")]


def of_type(events: list[Event], event_type: str) -> list[Event]:
    """The events of one type."""
    return [e for e in events if e.type == event_type]


async def outcome(bus: Bus, run_id: str, action_id: str = "a1", timeout_s: float = 15.0) -> Event:
    """Wait for the action's ``action.completed`` or ``action.failed``."""

    async def check() -> Event | None:
        for event in await action_events(bus, run_id):
            if isinstance(event, (ActionCompleted, ActionFailed)) and event.data.action_id == action_id:
                return event
        return None

    return await poll(check, f"an outcome of {action_id}", timeout_s)


async def settled(bus: Bus, seq: int, durable: str = "pool-tool") -> None:
    """Wait until the work item at stream sequence ``seq`` was delivered and acknowledged."""

    async def check() -> bool:
        try:
            info = await bus.js.consumer_info(subjects.WORK_STREAM, durable)
        except Exception:  # noqa: BLE001 - the consumer may not exist yet
            return False
        return info.delivered.stream_seq >= seq and info.num_ack_pending == 0

    await poll(check, f"work item {seq} acknowledged")


async def wait_started(bus: Bus, run_id: str) -> None:
    """Wait until the run has an ``action.started``."""

    async def started() -> bool:
        return bool(of_type(await action_events(bus, run_id), "action.started"))

    await poll(started, "action.started")


async def wait_for(predicate: Callable[[], bool], what: str) -> None:
    """Wait until a plain predicate holds."""

    async def check() -> bool:
        return predicate()

    await poll(check, what)


def event(cls: type[Event], run_id: str, event_id: str, data: Any) -> Event:
    """A log event as the kernel (or an earlier worker) would have written it."""
    return cls(id=event_id, run_id=run_id, time=NOW, data=data)


# ---- round trips ----------------------------------------------------------------------


async def test_builtin_tool_round_trip(bus: Bus, run_id: str) -> None:
    async with tool_pool(bus):
        await bus.publish_work("tool", work(run_id, "calc.eval", {"expression": "2 * (3 + 4) ** 2"}))
        done = await outcome(bus, run_id)
        await bus.publish_work("tool", work(run_id, "text.count", {"text": "a b c"}, action_id="a2",
                                            causation_id="sched-2"))
        counted = await outcome(bus, run_id, "a2")
    assert isinstance(done, ActionCompleted) and done.data.result == {"value": 98}
    assert done.id == "sched-1:a1:1:completed" and done.causation_id == "sched-1" and done.correlation_id == "corr"
    assert isinstance(counted, ActionCompleted) and counted.data.result["words"] == 3
    events = await action_events(bus, run_id)
    assert [e.type for e in events if e.data.action_id == "a1"] == ["action.started", "action.completed"]
    started = of_type(events, "action.started")[0]
    assert started.id == "sched-1:a1:1:started" and started.data.worker.startswith("tool-")


async def test_unknown_tool_fails(bus: Bus, run_id: str) -> None:
    async with tool_pool(bus):
        await bus.publish_work("tool", work(run_id, "nope.nothing", {}))
        failed = await outcome(bus, run_id)
    assert isinstance(failed, ActionFailed) and failed.data.code == "unknown_tool"
    assert "nope.nothing" in failed.data.error and "calc.eval" in failed.data.error
    assert of_type(await action_events(bus, run_id), "action.started") == []


async def test_tool_error_fails_with_its_message(bus: Bus, run_id: str, testkit: Path) -> None:
    async with tool_pool(bus, "--plugins", str(testkit)):
        await bus.publish_work("tool", work(run_id, "calc.eval", {"expression": "1 / 0"}))
        await bus.publish_work("tool", work(run_id, "kit.fail", {"message": "the disk is on fire"},
                                            action_id="a2", causation_id="sched-2"))
        division = await outcome(bus, run_id)
        custom = await outcome(bus, run_id, "a2")
    assert isinstance(division, ActionFailed) and division.data.code == "tool_error"
    assert "division by zero" in division.data.error and division.data.retryable is False
    assert isinstance(custom, ActionFailed) and custom.data.error == "the disk is on fire"


async def test_timeout_is_a_failure_with_code_timeout(bus: Bus, run_id: str, testkit: Path) -> None:
    async with tool_pool(bus, "--plugins", str(testkit)):
        await bus.publish_work("tool", work(run_id, "kit.slow", {"key": run_id, "seconds": 30}, timeout_s=0.3))
        failed = await outcome(bus, run_id)
    assert isinstance(failed, ActionFailed) and failed.data.code == "timeout"
    assert failed.data.retryable is True  # the tool is idempotent: the kernel may try again


async def test_progress_events_come_before_the_outcome(bus: Bus, run_id: str, testkit: Path) -> None:
    async with tool_pool(bus, "--plugins", str(testkit)):
        await bus.publish_work("tool", work(run_id, "kit.slow", {"key": run_id, "seconds": 0.3, "steps": 3}))
        await outcome(bus, run_id)
    events = await action_events(bus, run_id)
    assert [e.type for e in events] == ["action.started"] + ["action.progress"] * 3 + ["action.completed"]
    progress = of_type(events, "action.progress")
    assert [p.data.message for p in progress] == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
    assert [p.data.fraction for p in progress] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert [p.id for p in progress] == [f"sched-1:a1:1:progress:{n}" for n in (1, 2, 3)]


async def test_concurrency_bounds_the_calls_in_flight(bus: Bus, run_id: str, testkit: Path) -> None:
    key = f"{run_id}-gauge"
    async with tool_pool(bus, "--plugins", str(testkit), "--concurrency", "2"):
        for n in range(6):
            await bus.publish_work("tool", work(run_id, "kit.gauge", {"key": key, "seconds": 0.3},
                                                action_id=f"g{n}", causation_id=f"s{n}"))
        done = [await outcome(bus, run_id, f"g{n}") for n in range(6)]
    assert all(isinstance(e, ActionCompleted) for e in done)
    assert kit.RUNNING[f"{key}:max"] == 2


async def test_the_pool_keeps_pulling_across_a_server_restart(
    bus: Bus, run_id: str, nats_server: NatsProcess, testkit: Path
) -> None:
    async with tool_pool(bus, "--plugins", str(testkit)):
        await bus.publish_work("tool", work(run_id, "kit.count", {"key": f"{run_id}-1"}))
        assert isinstance(await outcome(bus, run_id), ActionCompleted)
        nats_server.stop()  # the open pull requests die with it
        await asyncio.to_thread(nats_server.start)
        await bus.publish_work("tool", work(run_id, "kit.count", {"key": f"{run_id}-2"}, action_id="a2",
                                            causation_id="sched-2"))
        done = await outcome(bus, run_id, "a2")
    assert isinstance(done, ActionCompleted) and kit.CALLS[f"{run_id}-2"] == 1


# ---- keep-alive, redelivery, crashes ------------------------------------------------------


async def test_long_action_is_kept_alive_not_redelivered(bus: Bus, run_id: str, testkit: Path) -> None:
    key = f"{run_id}-long"
    async with tool_pool(bus, "--plugins", str(testkit), "--ack-wait", "1"):
        seq = await bus.publish_work("tool", work(run_id, "kit.slow", {"key": key, "seconds": 3, "steps": 1}))
        done = await outcome(bus, run_id)
        await settled(bus, seq)
        info = await bus.js.consumer_info(subjects.WORK_STREAM, "pool-tool")
    assert isinstance(done, ActionCompleted)
    assert info.config.ack_wait == 1.0 and info.num_redelivered == 0
    assert len(of_type(await action_events(bus, run_id), "action.started")) == 1
    assert kit.CALLS[key] == 1


@pytest.mark.parametrize(
    "ended",
    [
        lambda run_id: event(ActionCompleted, run_id, "w:done", ActionCompletedData(action_id="a1", result=1)),
        lambda run_id: event(ActionFailed, run_id, "w:fail", ActionFailedData(action_id="a1", code="x", error="y")),
        lambda run_id: event(ActionCancelled, run_id, "k:c", ActionCancelledData(action_id="a1", reason="x")),
        lambda run_id: event(ActionTimedOut, run_id, "k:t", ActionDecisionData(action_id="a1", reason="timeout")),
    ],
    ids=["completed", "failed", "cancelled", "timed_out"],
)
async def test_attempt_already_ended_is_not_run_again(
    bus: Bus, run_id: str, testkit: Path, ended: Callable[[str], Event]
) -> None:
    """A work item queued before the worker started is checked against the log (so is a redelivery,
    see test_tool_executor.py); a fresh first delivery cannot have an outcome yet."""
    key = f"{run_id}-ended"
    seq = await bus.publish_work("tool", work(run_id, "kit.count", {"key": key}))
    await bus.publish_event(event(ActionStarted, run_id, "w:start", ActionStartedData(action_id="a1")))
    await bus.publish_event(ended(run_id))
    async with tool_pool(bus, "--plugins", str(testkit)):
        await settled(bus, seq)
    assert kit.CALLS[key] == 0
    assert [e.id for e in await action_events(bus, run_id)] == ["w:start", ended(run_id).id]


async def test_crash_after_start_reruns_an_idempotent_tool(bus: Bus, run_id: str, testkit: Path) -> None:
    key = f"{run_id}-idem"
    await bus.publish_event(event(ActionStarted, run_id, "w:start", ActionStartedData(action_id="a1")))
    async with tool_pool(bus, "--plugins", str(testkit)):
        await bus.publish_work("tool", work(run_id, "kit.count", {"key": key}))
        done = await outcome(bus, run_id)
    assert isinstance(done, ActionCompleted) and done.data.result == {"key": key, "calls": 1}
    assert kit.CALLS[key] == 1


async def test_crash_after_start_never_reruns_a_non_idempotent_tool(bus: Bus, run_id: str, testkit: Path) -> None:
    key = f"{run_id}-once"
    # queued before this worker started, as after a crash (a redelivery reads the log the same way)
    await bus.publish_work("tool", work(run_id, "kit.count_once", {"key": key}))
    await bus.publish_event(event(ActionStarted, run_id, "w:start", ActionStartedData(action_id="a1")))
    # the kernel's copy of the spec says non-idempotent too: an idempotent tool is not rerun either
    await bus.publish_work("tool", work(run_id, "kit.count", {"key": key}, action_id="a2", causation_id="s2",
                                        tool=ToolSpec(name="kit.count", idempotent=False)))
    await bus.publish_event(event(ActionStarted, run_id, "w:start2", ActionStartedData(action_id="a2")))
    async with tool_pool(bus, "--plugins", str(testkit)):
        failed = await outcome(bus, run_id)
        second = await outcome(bus, run_id, "a2")
    assert isinstance(failed, ActionFailed) and failed.data.code == "outcome_unknown"
    assert failed.data.error == OUTCOME_UNKNOWN_MESSAGE and failed.data.retryable is False
    assert isinstance(second, ActionFailed) and second.data.code == "outcome_unknown"
    assert kit.CALLS[key] == 0


def test_attempt_record_starts_afresh_at_the_dispatch() -> None:
    """Given the log of an action id used twice (two turns), when the second dispatch is checked, it runs."""

    def scheduled(event_id: str, attempt: int = 1) -> Event:
        return event(ActionScheduled, "r", event_id, ActionDecisionData(action_id="a1", reason="x", attempt=attempt))

    started = event(ActionStarted, "r", "st", ActionStartedData(action_id="a1"))
    completed = event(ActionCompleted, "r", "c", ActionCompletedData(action_id="a1"))
    log = [scheduled("s1"), started, completed, scheduled("s2")]
    assert attempt_record(log, work("r", "t", causation_id="s1")).outcome == "action.completed"
    assert attempt_record(log, work("r", "t", causation_id="s2")) == attempt_record([], work("r", "t"))
    # a failure of attempt 1 does not end attempt 2; a late completion of attempt 1 does
    failed1 = event(ActionFailed, "r", "f1", ActionFailedData(action_id="a1", code="x", error="y", attempt=1))
    retry = [scheduled("s1"), started, failed1, scheduled("s3", attempt=2)]
    assert attempt_record(retry, work("r", "t", causation_id="s3", attempt=2)).outcome is None
    late = [*retry, completed]
    assert attempt_record(late, work("r", "t", causation_id="s3", attempt=2)).outcome == "action.completed"
    # another action's events do not count
    other = event(ActionCompleted, "r", "o", ActionCompletedData(action_id="a2"))
    assert attempt_record([other], work("r", "t")).outcome is None



async def test_stopping_worker_hands_running_work_back(bus: Bus, run_id: str, testkit: Path) -> None:
    key = f"{run_id}-handback"
    async with tool_pool(bus, "--plugins", str(testkit), "--drain", "0.2"):
        await bus.publish_work("tool", work(run_id, "kit.slow_first", {"key": key, "seconds": 60}))
        await wait_started(bus, run_id)
    assert key in kit.STOPPED  # the drain ran out: the call was stopped and the item handed back
    async with tool_pool(bus, "--plugins", str(testkit)):
        done = await outcome(bus, run_id)
    assert isinstance(done, ActionCompleted) and done.data.result == {"key": key, "calls": 2}
    assert len(of_type(await action_events(bus, run_id), "action.started")) == 1  # same id: stored once

# ---- cancellation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stop",
    [
        lambda run_id: event(ActionCancelled, run_id, "k:1", ActionCancelledData(action_id="a1", reason="x")),
        lambda run_id: event(RunCancelled, run_id, "k:2", RunCancelledData(reason="cancelled by user")),
        lambda run_id: event(ActionTimedOut, run_id, "k:3", ActionDecisionData(action_id="a1", reason="timeout")),
    ],
    ids=["action.cancelled", "run.cancelled", "action.timed_out"],
)
async def test_cancellation_stops_the_call_and_reports_nothing_more(
    bus: Bus, run_id: str, testkit: Path, stop: Callable[[str], Event]
) -> None:
    key = f"{run_id}-cancel"
    async with tool_pool(bus, "--plugins", str(testkit)):
        seq = await bus.publish_work("tool", work(run_id, "kit.slow", {"key": key, "seconds": 60}))
        await wait_started(bus, run_id)
        await bus.publish_event(stop(run_id))
        await wait_for(lambda: key in kit.STOPPED, "the call cancelled")
        await settled(bus, seq)
    types = [e.type for e in await action_events(bus, run_id)]
    assert "action.completed" not in types and "action.failed" not in types


async def test_cancelled_attempt_of_another_action_keeps_running(bus: Bus, run_id: str, testkit: Path) -> None:
    key = f"{run_id}-other"
    async with tool_pool(bus, "--plugins", str(testkit)):
        await bus.publish_work("tool", work(run_id, "kit.slow", {"key": key, "seconds": 0.5}))
        await bus.publish_event(event(ActionCancelled, run_id, "k:x", ActionCancelledData(action_id="zz", reason="x")))
        await bus.publish_event(event(ActionTimedOut, run_id, "k:y", ActionDecisionData(action_id="a1", reason="t",
                                                                                         attempt=2)))
        done = await outcome(bus, run_id)
    assert isinstance(done, ActionCompleted) and key not in kit.STOPPED


# ---- plugins ---------------------------------------------------------------------------------


async def system_events(bus: Bus) -> list[Event]:
    """Every stored plugin lifecycle event."""
    return [e async for e, _ in bus.read(f"{subjects.PREFIX}.sys.plugin.>", stream=subjects.SYSTEM_STREAM)]


async def test_plugins_register_heartbeat_and_unregister(bus: Bus, testkit: Path) -> None:
    async with tool_pool(bus, "--plugins", str(testkit), "--heartbeat", "0.2"):

        async def two_beats() -> bool:
            beats = [e for e in await system_events(bus) if e.type == "plugin.heartbeat" and e.data.plugin == "kit"]
            return len(beats) >= 2

        await poll(two_beats, "two heartbeats of plugin kit")
    events = await system_events(bus)
    registered = {e.data.plugin: e for e in of_type(events, "plugin.registered")}
    unregistered = {e.data.plugin for e in of_type(events, "plugin.unregistered")}
    assert set(registered) == {m.name for m in builtin_manifests()} | {"kit"} == unregistered
    assert "kit.count_once" in {t.name for t in registered["kit"].data.tools}
    assert all(e.run_id == "" for e in events)
    assert len({e.data.worker_id for e in events}) == 1
    assert events[-1].type == "plugin.unregistered"
    last_beat = max(i for i, e in enumerate(events) if e.type == "plugin.heartbeat")
    assert all(e.type == "plugin.unregistered" for e in events[last_beat + 1:])


needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


@pytest.fixture
def wordstats_out(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A world-writable output folder for the wordstats plugin (sandboxes run as other uids)."""
    path = Path(tempfile.mkdtemp(prefix="cortex-wordstats-"))
    path.chmod(0o777)
    monkeypatch.setenv("WORDSTATS_OUT", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@needs_bwrap
async def test_subprocess_plugin_runs_in_the_pool(bus: Bus, run_id: str, wordstats_out: Path) -> None:
    text = "the cat and the dog and the bird " * 10
    async with tool_pool(bus, "--no-builtins", "--plugins", str(REPO / "examples" / "plugins")):
        await bus.publish_work("tool", work(run_id, "wordstats.top_words", {"text": text, "n": 2}))
        done = await outcome(bus, run_id, timeout_s=30)
    assert isinstance(done, ActionCompleted), done
    assert done.data.result == {"words": [{"word": "the", "count": 30}, {"word": "and", "count": 20}], "total": 80}
    progress = of_type(await action_events(bus, run_id), "action.progress")
    assert progress and progress[-1].data.fraction == 1.0 and "counted 80 words" in progress[-1].data.message


async def test_lane_plugin_is_consumed_on_its_own_subject(bus: Bus, run_id: str, tmp_path: Path) -> None:
    plugins = [str(write_manifest(tmp_path, "kit")), str(write_manifest(tmp_path, "lanekit", lane="gpu"))]
    async with tool_pool(bus, "--no-builtins", "--plugins", *plugins):
        seq = await bus.publish_work("tool", work(run_id, "lanekit.count", {"key": f"{run_id}-lane"}), lane="gpu")
        done = await outcome(bus, run_id)
        await settled(bus, seq, durable="pool-tool-gpu")
        lane_info = await bus.js.consumer_info(subjects.WORK_STREAM, "pool-tool-gpu")
        main_info = await bus.js.consumer_info(subjects.WORK_STREAM, "pool-tool")
    assert isinstance(done, ActionCompleted) and kit.CALLS[f"{run_id}-lane"] == 1
    assert lane_info.config.filter_subject == "cortex.work.tool.gpu" and lane_info.delivered.stream_seq == seq
    assert main_info.config.filter_subject == "cortex.work.tool" and main_info.delivered.consumer_seq == 0


# ---- a real worker process, killed -9 mid-action ------------------------------------------------


def start_worker(nats: NatsProcess, *argv: str, log: Path) -> subprocess.Popen:
    """``cortex worker tool ARGV`` as a child process."""
    env = {**os.environ, "CORTEX_NATS_URL": nats.url, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "cortex.cli.main", "worker", "tool", *argv],
        cwd=REPO, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )


async def test_killed_worker_is_not_run_twice(
    bus: Bus, run_id: str, nats_server: NatsProcess, testkit: Path, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.txt"
    argv = ("--no-builtins", "--plugins", str(testkit), "--ack-wait", "1")
    first = start_worker(nats_server, *argv, log=tmp_path / "first.log")
    second = None
    try:
        await bus.publish_work("tool", work(run_id, "kit.append_and_wait", {"path": str(calls), "seconds": 120}))

        async def running() -> bool:
            started = of_type(await action_events(bus, run_id), "action.started")
            return bool(started) and calls.exists() and calls.read_text().count("called") == 1

        await poll(running, "the first worker running the action", timeout_s=30)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        second = start_worker(nats_server, *argv, log=tmp_path / "second.log")
        failed = await outcome(bus, run_id, timeout_s=30)
        assert isinstance(failed, ActionFailed) and failed.data.code == "outcome_unknown"
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert calls.read_text().count("called") == 1
    events = await action_events(bus, run_id)
    assert [e.type for e in events] == ["action.started", "action.failed"]
    info = await bus.js.consumer_info(subjects.WORK_STREAM, "pool-tool")
    assert info.num_ack_pending == 0 and info.num_pending == 0


# ---- reading the log -------------------------------------------------------------------------


async def test_log_reader_reads_in_batches_from_a_sequence(bus: Bus, run_id: str) -> None:
    ids = [f"e{i}" for i in range(7)]
    seqs = [await bus.publish_event(event(ActionStarted, run_id, i, ActionStartedData(action_id=i))) for i in ids]
    await bus.publish_event(event(ActionCancelled, run_id, "c", ActionCancelledData(action_id="x", reason="r")))
    reader = LogReader(bus, batch=3)
    await reader.start()
    try:
        everything, last = await reader.read(subjects.run_event(run_id, "action.*"))
        tail, _ = await reader.read(subjects.run_event(run_id, "action.*"), start_seq=seqs[4], types={"action.started"})
        nothing, same = await reader.read(subjects.run_event(run_id, "action.*"), start_seq=last + 1)
    finally:
        await reader.close()
    assert [e.id for e in everything] == ids + ["c"]
    assert [e.id for e in tail] == ids[4:]
    assert nothing == [] and same == last


async def test_log_reader_falls_back_to_a_consumer_without_direct_get(bus: Bus, run_id: str) -> None:
    await bus.js.add_stream(StreamConfig(name="NO_DIRECT", subjects=["nodirect.>"], allow_direct=False))
    for i in range(3):
        started = event(ActionStarted, run_id, f"e{i}", ActionStartedData(action_id="a"))
        await bus.js.publish("nodirect.x", encode(started))
    reader = LogReader(bus, stream="NO_DIRECT")
    await reader.start()
    try:
        events, last = await reader.read("nodirect.>")
    finally:
        await reader.close()
    assert [e.id for e in events] == ["e0", "e1", "e2"] and last == 3
    assert not reader.direct
