"""``cortex kernel`` processes side by side: exactly-once decisions, kill -9, stop and restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cortex.bus.client import Bus
from tests.kernel_service.support import (
    KernelProcess,
    Pools,
    agent,
    check_exactly_once,
    count,
    expected_response,
    run_log,
    run_requested,
    wait_until,
)
from tests.support.nats import NatsProcess

RUNS = 50


@pytest.fixture
def kernels(nats_server: NatsProcess) -> Iterator[list[KernelProcess]]:
    """Started kernel processes; any still running at the end are killed (before the server)."""
    started: list[KernelProcess] = []
    yield started
    for kernel in started:
        kernel.kill()


def start_kernels(kernels: list[KernelProcess], url: str, log_dir: Path, n: int) -> list[KernelProcess]:
    """Start ``n`` more kernel processes."""
    new = [KernelProcess(url, log_dir).start() for _ in range(n)]
    kernels.extend(new)
    return new


@pytest.fixture
async def pools(bus: Bus) -> AsyncIterator[Pools]:
    """The llm and tool pools, with tools slow enough that runs are in flight for a while."""
    played = await Pools(bus, actions=2, tool_delay_s=0.3).start()
    yield played
    await played.stop()


async def start_runs(bus: Bus, n: int = RUNS) -> set[str]:
    """Request ``n`` runs at once; return the ids of the requests."""
    requests = [run_requested(f"run{i:02d}") for i in range(n)]
    await asyncio.gather(*(bus.publish_event(r) for r in requests))
    return {r.id for r in requests}


async def completed_runs(bus: Bus) -> int:
    """How many run.completed events are stored."""
    return await count(bus, "cortex.evt.*.run.completed")


async def all_completed(bus: Bus) -> bool:
    """True once every run completed."""
    return await completed_runs(bus) == RUNS


async def at_least(bus: Bus, filter_subject: str, n: int) -> bool:
    """True once ``n`` events are stored on ``filter_subject``."""
    return await count(bus, filter_subject) >= n


async def no_work_left(bus: Bus) -> bool:
    """True when the pools took and finished every work item."""
    return (await bus.js.stream_info("CORTEX_WORK")).state.messages == 0


async def check_all_runs(bus: Bus, pools: Pools, request_ids: set[str], n: int = RUNS) -> None:
    """Every run completed with the right answer, and every decision was made exactly once."""
    inputs = pools.published | request_ids
    for i in range(n):
        log = await run_log(bus, f"run{i:02d}")
        assert [e.data.response for e in log if e.type == "run.completed"] == [expected_response(2)]
        check_exactly_once(log, inputs)
    assert max(pools.handled.values()) == 1  # no work item ran twice


async def test_two_kernels_decide_fifty_runs_exactly_once(
    bus: Bus, nats_server: NatsProcess, kernels: list[KernelProcess], pools: Pools, tmp_path: Path
) -> None:
    start_kernels(kernels, nats_server.url, tmp_path, 2)
    request_ids = await start_runs(bus)
    await wait_until(lambda: all_completed(bus), 60, "all runs completed")
    stats = [kernel.stop() for kernel in kernels]
    assert all(s["decided"] > 0 for s in stats), stats  # both kernels took part
    await check_all_runs(bus, pools, request_ids)


async def test_runs_complete_when_a_kernel_is_killed_mid_run(
    bus: Bus, nats_server: NatsProcess, kernels: list[KernelProcess], pools: Pools, tmp_path: Path
) -> None:
    victim, survivor = start_kernels(kernels, nats_server.url, tmp_path, 2)
    request_ids = await start_runs(bus)
    await wait_until(lambda: at_least(bus, "cortex.evt.*.action.scheduled", 20), 30, "runs under way")
    victim.kill()
    assert await completed_runs(bus) < RUNS  # killed mid-run
    await wait_until(lambda: all_completed(bus), 60, "all runs completed")
    assert survivor.stop()["decided"] > 0
    await check_all_runs(bus, pools, request_ids)


async def test_runs_in_flight_resume_when_all_kernels_restart(
    bus: Bus, nats_server: NatsProcess, kernels: list[KernelProcess], pools: Pools, tmp_path: Path
) -> None:
    first = start_kernels(kernels, nats_server.url, tmp_path, 2)
    request_ids = await start_runs(bus)
    await wait_until(lambda: at_least(bus, "cortex.evt.*.action.scheduled", 20), 30, "runs under way")
    for kernel in first:
        kernel.stop()
    assert await completed_runs(bus) < RUNS  # stopped mid-run
    # With no kernel, the pools finish the work in hand; its outcomes wait in the log.
    await wait_until(lambda: no_work_left(bus), 30, "work finished")
    second = start_kernels(kernels, nats_server.url, tmp_path, 2)
    await wait_until(lambda: all_completed(bus), 60, "all runs completed")
    assert sum(kernel.stop()["rebuilds"] for kernel in second) > 0  # states came from the log
    await check_all_runs(bus, pools, request_ids)


async def test_runs_complete_across_a_nats_server_restart(
    bus: Bus, nats_server: NatsProcess, kernels: list[KernelProcess], pools: Pools, tmp_path: Path
) -> None:
    """The server stops mid-run and comes back on its store: the kernels' pulls, the partition
    source and the leases recover, and every decision is still made exactly once."""
    start_kernels(kernels, nats_server.url, tmp_path, 2)
    request_ids = await start_runs(bus)
    await wait_until(lambda: at_least(bus, "cortex.evt.*.action.scheduled", 20), 30, "runs under way")
    nats_server.stop()
    await asyncio.to_thread(nats_server.start)
    assert await completed_runs(bus) < RUNS  # the restart happened mid-run
    await wait_until(lambda: all_completed(bus), 90, "all runs completed")
    await check_all_runs(bus, pools, request_ids)


async def test_a_timer_survives_the_kernel_that_set_it(
    bus: Bus, nats_server: NatsProcess, kernels: list[KernelProcess], tmp_path: Path, run_id: str
) -> None:
    silent = await Pools(bus, actions=1, answer_tools=False).start()
    try:
        (setter,) = start_kernels(kernels, nats_server.url, tmp_path, 1)
        request = run_requested(run_id, agent(timeout_s=3.0))
        await bus.publish_event(request)
        await wait_until(lambda: at_least(bus, f"cortex.evt.{run_id}.timer.set", 1), 30, "timer set")
        setter.kill()
        assert await count(bus, f"cortex.evt.{run_id}.timer.fired") == 0
        start_kernels(kernels, nats_server.url, tmp_path, 1)
        await wait_until(lambda: at_least(bus, f"cortex.evt.{run_id}.run.completed", 1), 30, "run completed")
    finally:
        await silent.stop()
    log = await run_log(bus, run_id)
    assert [e.type for e in log if e.type.startswith(("timer.", "action.timed_out"))] == [
        "timer.set", "timer.fired", "action.timed_out",
    ]
    check_exactly_once(log, silent.published | {request.id})

