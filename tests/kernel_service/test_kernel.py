"""One kernel on a real nats-server: runs end to end, timers, cache misses, half-made decisions."""

from __future__ import annotations

import asyncio

from cortex.bus.client import Bus
from cortex.bus.events import Event, RunCompleted
from cortex.kernel.decider import RunState, step
from cortex.kernel.service import Kernel
from tests.kernel_service.support import (
    Pools,
    agent,
    check_exactly_once,
    count,
    expected_response,
    run_log,
    run_requested,
    wait_until,
)


class running_kernel:
    """``async with running_kernel(url, **options) as kernel``: a kernel on its own connection."""

    def __init__(self, url: str, **options: object) -> None:
        self.url = url
        self.options = options

    async def __aenter__(self) -> Kernel:
        self.bus = await Bus.connect(self.url, name="test-kernel")
        self.kernel = Kernel(self.bus, **self.options)  # type: ignore[arg-type]
        self.task = asyncio.create_task(self.kernel.run())
        await asyncio.wait_for(self.kernel.ready.wait(), 10)
        return self.kernel

    async def __aexit__(self, *exc: object) -> None:
        self.kernel.stop()
        await asyncio.wait_for(self.task, 15)
        await self.bus.close()


async def completed(bus: Bus, run_id: str) -> RunCompleted | None:
    """The run's run.completed, if it is stored."""
    return next((e for e in await run_log(bus, run_id) if isinstance(e, RunCompleted)), None)


async def test_a_run_goes_end_to_end(bus: Bus, run_id: str) -> None:
    pools = await Pools(bus, actions=2).start()
    try:
        async with running_kernel(bus.url):
            request = run_requested(run_id)
            await bus.publish_event(request)
            await wait_until(lambda: completed(bus, run_id), what="run.completed")
    finally:
        await pools.stop()
    log = await run_log(bus, run_id)
    done = await completed(bus, run_id)
    assert done is not None and done.data.response == expected_response(2)
    assert [e.type for e in log if e.type in ("turn.requested", "action.scheduled")] == [
        "turn.requested", "action.scheduled", "action.scheduled", "turn.requested",
    ]
    check_exactly_once(log, pools.published | {request.id})
    assert sorted(pools.handled) == sorted(
        [f"work:{run_id}:t1", f"work:{run_id}:t2", f"work:{run_id}:a1:1", f"work:{run_id}:a2:1"]
    )
    assert set(pools.handled.values()) == {1}


async def test_an_input_handled_twice_is_decided_once(bus: Bus, run_id: str) -> None:
    kernel = Kernel(bus)  # not consuming: only the direct calls below decide
    request = run_requested(run_id)
    await bus.publish_event(request)
    await kernel.handle(request)
    published = kernel.stats.outputs
    await kernel.handle(request)
    kernel.cache.drop(run_id)
    await kernel.handle(request)  # rebuilt from the log: still nothing to publish
    assert published == 2 and kernel.stats.outputs == published
    assert [e.type for e in await run_log(bus, run_id)] == ["run.requested", "run.started", "turn.requested"]
    assert kernel.stats.rebuilds == 2
    await kernel.reader.close()


async def test_a_half_published_decision_is_completed_by_the_next_kernel(bus: Bus, run_id: str) -> None:
    request = run_requested(run_id)
    decision = step(RunState(), request)
    first = next(out for out in decision.outputs if isinstance(out, Event))
    await bus.publish_event(request)
    await bus.publish_event(first)  # a kernel died here: run.started stored, no turn.requested, no work
    pools = await Pools(bus, actions=1).start()
    try:
        async with running_kernel(bus.url):
            await wait_until(lambda: completed(bus, run_id), what="run.completed")
    finally:
        await pools.stop()
    check_exactly_once(await run_log(bus, run_id), pools.published | {request.id})


async def test_runs_complete_when_the_cache_holds_one_run(bus: Bus) -> None:
    pools = await Pools(bus, actions=2).start()
    requests = [run_requested(f"cache{i}") for i in range(6)]
    try:
        async with running_kernel(bus.url, cache_size=1) as kernel:
            await asyncio.gather(*(bus.publish_event(r) for r in requests))
            await wait_until(
                lambda: _all_completed(bus, [r.run_id for r in requests]), what="all runs completed"
            )
    finally:
        await pools.stop()
    assert kernel.stats.rebuilds > len(requests)  # runs were evicted and read back from the log
    for request in requests:
        check_exactly_once(await run_log(bus, request.run_id), pools.published | {request.id})


async def _all_completed(bus: Bus, run_ids: list[str]) -> bool:
    return all([await completed(bus, run_id) is not None for run_id in run_ids])


async def test_a_timeout_timer_fires_and_times_the_action_out(bus: Bus, run_id: str) -> None:
    pools = await Pools(bus, actions=1, answer_tools=False).start()  # the tool never answers
    request = run_requested(run_id, agent(timeout_s=1.5))
    try:
        async with running_kernel(bus.url, ack_wait_s=0.5) as kernel:  # the timer waits past ack wait
            await bus.publish_event(request)
            await wait_until(lambda: completed(bus, run_id), what="run.completed")
    finally:
        await pools.stop()
    log = await run_log(bus, run_id)
    by_type = {e.type: e for e in log}
    timer_set, fired = by_type["timer.set"], by_type["timer.fired"]
    assert fired.id == f"{timer_set.id}:fired" and fired.data == timer_set.data
    assert by_type["action.timed_out"].causation_id == fired.id
    assert by_type["action.failed"].data.code == "timeout"
    assert await count(bus, f"cortex.evt.{run_id}.timer.fired") == 1
    assert kernel.stats.timers_fired == 1
    check_exactly_once(log, pools.published | {request.id})
