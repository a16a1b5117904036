"""The llm pool against a real nats-server, with scripted (and OpenAI-compatible) providers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from aiohttp import web
from nats.js.errors import NotFoundError

from cortex.adapters.llm.scripted import count_tokens
from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.events import (
    ActionCompleted,
    ActionCompletedData,
    ActionDeclared,
    ActionDeclaredData,
    ActionFailed,
    ActionFailedData,
    ActionRetried,
    ActionDecisionData,
    CancelRequested,
    CancelRequestedData,
    ChatMessage,
    Event,
    ParseErrorEvent,
    RunCancelled,
    RunCancelledData,
    TurnCancelled,
    TurnCancelledData,
    TurnChunk,
    TurnCompleted,
    TurnFailed,
    TurnRequestedData,
    TurnStarted,
    TurnStartedData,
)
from cortex.bus.work import ActionWork, TurnWork, encode_work
from cortex.workers.llm_pool import LlmPool
from cortex.workers.turn_runner import TurnSettings
from tests.llm.http_servers import send_event, serve, start_sse
from tests.support.nats import NatsProcess

WORKER_TYPES = {
    "turn.started", "turn.chunk", "thought.delta", "response.delta", "parse.error",
    "action.declared", "turn.completed", "turn.failed",
}  # fmt: skip

SYNC_FIRST = (
    "<thought>Check the clock first."
    '<action type="tool" name="clock.now" id="a1" mode="sync">{"tz": "UTC"}</action>'
)
SYNC_SCRIPT = [
    {
        "after_result": "a1",
        "text": ' Now I know.</thought><response final="true">It is noon in UTC.</response>',
    },
    # the text after </action> is what the model would have written without waiting: dropped
    {"text": SYNC_FIRST + " IGNORED guess: midnight.</thought>"},
]


# ---- helpers ---------------------------------------------------------------------------


def turn_work(
    run_id: str,
    script: list[dict[str, Any]] | None = None,
    *,
    turn_id: str = "t1",
    provider: str = "scripted",
    model: str = "",
    max_tokens: int = 1024,
    options: dict[str, Any] | None = None,
    messages: tuple[ChatMessage, ...] = (ChatMessage("user", "What time is it?"),),
    tools: tuple[Any, ...] = (),
    **pacing: Any,
) -> TurnWork:
    """A turn work item as the kernel would publish it."""
    provider_options = dict(options or {})
    if script is not None:
        provider_options.update(script=script, **pacing)
    request = TurnRequestedData(
        turn_id=turn_id,
        iteration=1,
        provider=provider,
        model=model,
        messages=messages,
        tools=tools,
        max_tokens=max_tokens,
        provider_options={**provider_options, "prompt_version": "v1"},
    )
    return TurnWork(run_id=run_id, causation_id=f"{run_id}:requested:{turn_id}", request=request)


def kernel_event(cls: type[Event], run_id: str, event_id: str, data: Any) -> Event:
    """An event as the kernel (or a user) would publish it."""
    return cls(id=f"{run_id}:{event_id}", run_id=run_id, time=datetime.now(timezone.utc), data=data)


async def next_event(
    bus: Bus, run_id: str, predicate: Callable[[Event], bool], timeout_s: float = 20.0
) -> Event:
    """The first event of the run (past or future) matching ``predicate``."""
    async with asyncio.timeout(timeout_s):
        async for event, _seq in bus.watch(subjects.run_events(run_id), from_start=True):
            if predicate(event):
                return event
    raise AssertionError("watch ended")  # pragma: no cover


def of_type(*types: type[Event]) -> Callable[[Event], bool]:
    """A predicate: the event is one of ``types``."""
    return lambda event: isinstance(event, types)


async def worker_events(bus: Bus, run_id: str) -> list[Event]:
    """The events the llm pool published for the run, in log order."""
    history = await bus.read_run(run_id)
    return [e for e in history.events if e.type in WORKER_TYPES]


def texts(events: list[Event], kind: str) -> str:
    """The concatenated ``data.text`` of events of one type."""
    return "".join(e.data.text for e in events if e.type == kind)  # type: ignore[attr-defined]


async def pool_idle(bus: Bus, delivered: int, timeout_s: float = 20.0) -> None:
    """Wait until the pool's consumer got ``delivered`` items and acked them all."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    info = None
    while True:
        with contextlib.suppress(NotFoundError):  # the pool may not have created it yet
            info = await bus.js.consumer_info(subjects.WORK_STREAM, "pool-llm")
            if info.delivered.consumer_seq >= delivered and info.num_ack_pending == 0:
                return
        if loop.time() > deadline:
            raise AssertionError(f"pool not idle: {info}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def pool(bus: Bus) -> AsyncIterator[LlmPool]:
    """A running llm pool process (in this event loop) with small batches."""
    worker = LlmPool(bus, TurnSettings(chunk_chars=40, worker="test-llm", retry_grace_s=0.3))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.serve(stop, drain_s=5.0))
    try:
        yield worker
    finally:
        stop.set()
        await task


# ---- a plain turn ------------------------------------------------------------------------

PLAIN = (
    "<thought>The user wants the time; I will look it up.</thought>"
    '<action type="tool" name="clock.now" id="a1">{"tz": "UTC"}</action>'
    '<response final="true">Looking it up now, this may take a moment. '
    "The answer will follow in the next turn once the clock tool reports back.</response>"
)


async def test_a_turn_publishes_its_events_in_text_order(bus: Bus, pool: LlmPool, run_id: str) -> None:
    await bus.publish_work("llm", turn_work(run_id, [{"text": PLAIN}]))
    done = await next_event(bus, run_id, of_type(TurnCompleted))
    events = await worker_events(bus, run_id)
    types = [e.type for e in events]

    assert types[0] == "turn.started" and types[-1] == "turn.completed"
    assert events[0].data.attempt == 1 and events[0].data.worker == "test-llm"
    assert events[0].id == f"{run_id}:t1:1:started:1"
    assert all(e.causation_id == f"{run_id}:requested:t1" for e in events)
    # raw text: batched, in order, and exactly the output
    chunks = [e for e in events if isinstance(e, TurnChunk)]
    assert texts(events, "turn.chunk") == done.data.output == PLAIN
    assert [c.data.seq for c in chunks] == list(range(1, len(chunks) + 1))
    assert 3 <= len(chunks) <= len(PLAIN) // 40 + 2 < count_tokens(PLAIN)
    # parsed text
    assert texts(events, "thought.delta") == "The user wants the time; I will look it up."
    responses = [e for e in events if e.type == "response.delta"]
    assert "".join(e.data.text for e in responses).startswith("Looking it up now")
    assert all(e.data.final for e in responses)
    # the action, right after the text that declared it and before any text after it
    (declared,) = [e for e in events if isinstance(e, ActionDeclared)]
    assert declared.data.action_id == "a1" and declared.data.params == {"tz": "UTC"}
    assert declared.data.turn_id == "t1" and declared.data.mode == "async"
    at = events.index(declared)
    before = "".join(c.data.text for c in chunks if events.index(c) < at)
    assert "</action>" in before and "</response>" not in before
    assert texts(events[:at], "thought.delta") == "The user wants the time; I will look it up."
    assert not [e for e in events[:at] if e.type == "response.delta"]
    # the end
    assert done.data.stop_reason == "end_turn"
    assert done.data.usage.completion_tokens == count_tokens(PLAIN)
    assert done.data.usage.prompt_tokens == count_tokens("What time is it?\n")
    assert done.data.latency_ms > 0
    assert not [e for e in events if e.type == "parse.error"]


async def test_action_declared_is_published_while_the_model_still_writes(
    bus: Bus, pool: LlmPool, run_id: str
) -> None:
    slow_tail = "<response final=\"true\">" + "word " * 200 + "</response>"
    script = [{"text": PLAIN.split("<response")[0] + slow_tail}]
    await bus.publish_work("llm", turn_work(run_id, script, token_delay_s=0.02))
    declared = await next_event(bus, run_id, of_type(ActionDeclared))
    so_far = (await bus.read_run(run_id)).events
    assert not [e for e in so_far if isinstance(e, TurnCompleted)]  # ~4 s of output still to come
    assert declared.data.action_id == "a1"
    cancel = CancelRequestedData(target="turn", turn_id="t1")
    await bus.publish_event(kernel_event(CancelRequested, run_id, "cancel", cancel))
    done = await next_event(bus, run_id, of_type(TurnCompleted))
    assert done.data.stop_reason == "cancelled"


async def test_text_is_flushed_by_time_when_the_model_is_slow(bus: Bus, run_id: str) -> None:
    worker = LlmPool(bus, TurnSettings(chunk_chars=100_000, chunk_delay_s=0.05))
    text = '<response final="true">' + "tick " * 30 + "</response>"
    work = turn_work(run_id, [{"text": text}], token_delay_s=0.02)
    assert await worker.run_turn(work) == "end_turn"
    events = await worker_events(bus, run_id)
    chunks = [e for e in events if isinstance(e, TurnChunk)]
    assert texts(events, "turn.chunk") == text
    assert 4 <= len(chunks) < count_tokens(text)  # ~0.7 s of output in ~50 ms batches
    await worker.aclose()


async def test_parse_errors_are_published_and_the_turn_goes_on(
    bus: Bus, pool: LlmPool, run_id: str
) -> None:
    text = (
        'stray words <action type="tool" name="clock.now" id="a1">{"tz": UTC}</action>'
        '<response final="true">Sorry.</response>'
    )
    await bus.publish_work("llm", turn_work(run_id, [{"text": text}]))
    done = await next_event(bus, run_id, of_type(TurnCompleted))
    events = await worker_events(bus, run_id)
    errors = [e for e in events if isinstance(e, ParseErrorEvent)]
    assert [e.data.code for e in errors] == ["stray_text", "invalid_json"]
    assert errors[1].data.action_id == "a1" and errors[1].data.turn_id == "t1"
    assert errors[0].data.snippet.startswith("stray words")
    assert not [e for e in events if isinstance(e, ActionDeclared)]
    assert texts(events, "response.delta") == "Sorry."
    assert done.data.stop_reason == "end_turn" and done.data.output == text
    assert events.index(errors[1]) < events.index(done)


# ---- sync actions ------------------------------------------------------------------------


async def test_a_sync_action_pauses_and_the_turn_continues_after_its_result(
    bus: Bus, pool: LlmPool, run_id: str
) -> None:
    await bus.publish_work("llm", turn_work(run_id, SYNC_SCRIPT, tokens_per_chunk=4))
    declared = await next_event(bus, run_id, of_type(ActionDeclared))
    assert declared.data.mode == "sync"
    result = ActionCompletedData(action_id="a1", result="12:00", latency_ms=5.2)
    await bus.publish_event(kernel_event(ActionCompleted, run_id, "a1-done", result))
    done = await next_event(bus, run_id, of_type(TurnCompleted))

    block = '<action_result id="a1" status="ok" latency_ms="5"><![CDATA[12:00]]></action_result>'
    assert done.data.output == SYNC_FIRST + block + SYNC_SCRIPT[0]["text"]
    assert done.data.stop_reason == "end_turn"
    events = await worker_events(bus, run_id)
    assert [e.type for e in events].count("turn.started") == 1
    assert [e.type for e in events].count("turn.completed") == 1
    assert texts(events, "turn.chunk") == done.data.output
    assert texts(events, "thought.delta") == "Check the clock first. Now I know."
    assert texts(events, "response.delta") == "It is noon in UTC."
    assert not [e for e in events if e.type == "parse.error"]
    # the paused stream reports no usage: each of its pieces (4 tokens here) counts as one
    first, second = count_tokens(SYNC_FIRST), count_tokens(SYNC_SCRIPT[0]["text"])
    assert done.data.usage.completion_tokens == -(-first // 4) + second


async def test_a_failed_sync_action_is_injected_as_an_error(
    bus: Bus, pool: LlmPool, run_id: str
) -> None:
    await bus.publish_work("llm", turn_work(run_id, SYNC_SCRIPT))
    await next_event(bus, run_id, of_type(ActionDeclared))
    # a retryable failure the kernel retries is not the outcome; the retry's failure is
    first_try = ActionFailedData(action_id="a1", code="timeout", error="slow", retryable=True)
    await bus.publish_event(kernel_event(ActionFailed, run_id, "a1-f1", first_try))
    retry = ActionDecisionData(action_id="a1", reason="retryable_failure", attempt=2)
    await bus.publish_event(kernel_event(ActionRetried, run_id, "a1-retry", retry))
    final = ActionFailedData(action_id="a1", code="tool_error", error="no clock", attempt=2)
    await bus.publish_event(kernel_event(ActionFailed, run_id, "a1-f2", final))
    done = await next_event(bus, run_id, of_type(TurnCompleted))
    block = (
        '<action_result id="a1" status="error" latency_ms="0">'
        "<![CDATA[tool_error: no clock]]></action_result>"
    )
    assert done.data.output == SYNC_FIRST + block + SYNC_SCRIPT[0]["text"]


async def test_an_outcome_of_an_earlier_action_with_the_same_id_is_not_taken(
    bus: Bus, pool: LlmPool, run_id: str
) -> None:
    old = ActionCompletedData(action_id="a1", result="from turn 1")
    await bus.publish_event(kernel_event(ActionCompleted, run_id, "old-a1", old))
    await bus.publish_work("llm", turn_work(run_id, SYNC_SCRIPT, turn_id="t2"))
    await next_event(bus, run_id, of_type(ActionDeclared))
    new = ActionCompletedData(action_id="a1", result="from turn 2")
    await bus.publish_event(kernel_event(ActionCompleted, run_id, "new-a1", new))
    done = await next_event(bus, run_id, of_type(TurnCompleted))
    assert "from turn 2" in done.data.output and "from turn 1" not in done.data.output


async def sync_without_continuation(request: web.Request, recorder: Any) -> web.StreamResponse:
    """An OpenAI-compatible stream writing a sync action and more after it."""
    response = await start_sse(request)
    for piece in (SYNC_FIRST[:30], SYNC_FIRST[30:], " IGNORED</thought>"):
        await send_event(response, {"choices": [{"index": 0, "delta": {"content": piece}}]})
    await send_event(response, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    await send_event(response, "[DONE]")
    return response


async def test_without_continuation_the_turn_ends_at_the_sync_action(
    bus: Bus, pool: LlmPool, run_id: str
) -> None:
    async with serve("/v1/chat/completions", sync_without_continuation) as (root, recorder):
        options = {"base_url": f"{root}/v1", "api_key": ""}
        work = turn_work(run_id, provider="openai", model="gpt-test", options=options)
        await bus.publish_work("llm", work)
        done = await next_event(bus, run_id, of_type(TurnCompleted))
    assert done.data.stop_reason == "sync_action"
    assert done.data.output == SYNC_FIRST  # nothing injected: the next turn carries the result
    assert len(recorder.requests) == 1
    events = await worker_events(bus, run_id)
    assert [e.data.action_id for e in events if isinstance(e, ActionDeclared)] == ["a1"]
    assert not [e for e in events if e.type == "parse.error"]


# ---- cancellation ------------------------------------------------------------------------

LONG = '<response final="true">' + "and on " * 400 + "</response>"
CANCELS: dict[str, Callable[[str], Event]] = {
    "cancel.requested": lambda run_id: kernel_event(
        CancelRequested, run_id, "cancel", CancelRequestedData(target="turn", turn_id="t1")
    ),
    "turn.cancelled": lambda run_id: kernel_event(
        TurnCancelled, run_id, "turn-cancelled", TurnCancelledData(turn_id="t1", reason="test")
    ),
    "run.cancelled": lambda run_id: kernel_event(
        RunCancelled, run_id, "run-cancelled", RunCancelledData(reason="test")
    ),
}


@pytest.mark.parametrize("kind", sorted(CANCELS))
async def test_a_cancel_stops_the_stream_within_100_ms(
    bus: Bus, pool: LlmPool, run_id: str, kind: str
) -> None:
    await bus.publish_work("llm", turn_work(run_id, [{"text": LONG}], token_delay_s=0.05))
    await next_event(bus, run_id, of_type(TurnChunk))
    cancel = CANCELS[kind](run_id)
    await bus.publish_event(cancel)
    done = await next_event(bus, run_id, of_type(TurnCompleted))
    await pool_idle(bus, 1)
    # the one timing demand: the stream stops (its last event is out) within 100 ms
    stopped_in = (done.time - cancel.time).total_seconds()
    assert stopped_in <= 0.1, f"stream stopped {stopped_in * 1000:.1f} ms after the cancel"
    assert done.data.stop_reason == "cancelled"
    assert LONG.startswith(done.data.output) and len(done.data.output) < len(LONG) // 4
    events = await worker_events(bus, run_id)
    assert events[-1] == done  # nothing after the turn ended
    assert texts(events, "turn.chunk") == done.data.output


async def test_a_cancel_while_waiting_for_a_sync_result_ends_the_turn(
    bus: Bus, pool: LlmPool, run_id: str
) -> None:
    await bus.publish_work("llm", turn_work(run_id, SYNC_SCRIPT))
    await next_event(bus, run_id, of_type(ActionDeclared))
    await bus.publish_event(CANCELS["cancel.requested"](run_id))
    done = await next_event(bus, run_id, of_type(TurnCompleted))
    assert done.data.stop_reason == "cancelled" and done.data.output == SYNC_FIRST


async def test_a_turn_cancelled_before_it_starts_is_not_run(bus: Bus, pool: LlmPool, run_id: str) -> None:
    await bus.publish_event(CANCELS["run.cancelled"](run_id))
    await bus.publish_work("llm", turn_work(run_id, [{"text": PLAIN}]))
    await pool_idle(bus, 1)
    assert await worker_events(bus, run_id) == []


# ---- failures and redelivery ---------------------------------------------------------------


async def test_a_provider_error_fails_the_turn(bus: Bus, pool: LlmPool, run_id: str) -> None:
    await bus.publish_work("llm", turn_work(run_id, [{"user_contains": "weather", "text": "x"}]))
    failed = await next_event(bus, run_id, of_type(TurnFailed))
    assert failed.data.code == "provider_error" and failed.data.turn_id == "t1"
    assert failed.data.reason.startswith("scripted: no rule matches the prompt")
    assert "\n" not in failed.data.reason


async def test_an_unknown_provider_fails_the_turn_with_a_config_error(
    bus: Bus, pool: LlmPool, run_id: str
) -> None:
    await bus.publish_work("llm", turn_work(run_id, provider="nope"))
    failed = await next_event(bus, run_id, of_type(TurnFailed))
    assert failed.data.code == "config_error" and "unknown provider 'nope'" in failed.data.reason


async def test_a_redelivered_completed_turn_is_not_run_again(
    bus: Bus, pool: LlmPool, run_id: str
) -> None:
    work = turn_work(run_id, [{"text": PLAIN}])
    await bus.publish_work("llm", work)
    await next_event(bus, run_id, of_type(TurnCompleted))
    before = await worker_events(bus, run_id)
    # the same item again, past the stream's dedupe (as a redelivery after a lost ack would be)
    await bus.js.publish(subjects.work("llm"), encode_work(work))
    await pool_idle(bus, 2)
    assert await worker_events(bus, run_id) == before


async def test_a_turn_interrupted_by_a_crash_is_run_again_as_a_new_attempt(
    bus: Bus, pool: LlmPool, run_id: str
) -> None:
    work = turn_work(run_id, [{"text": PLAIN}])
    # what a worker that crashed mid-turn left behind: turn.started and the action it declared
    started = TurnStartedData(turn_id="t1", worker="crashed", attempt=1)
    await bus.publish_event(kernel_event(TurnStarted, run_id, "t1:1:started:1", started))
    action = ActionDeclaredData(
        turn_id="t1", action_id="a1", type="tool", name="clock.now", params={"tz": "UTC"}
    )
    await bus.publish_event(kernel_event(ActionDeclared, run_id, "t1:1:action:1", action))
    await bus.publish_work("llm", work)
    done = await next_event(bus, run_id, of_type(TurnCompleted))
    events = await worker_events(bus, run_id)
    starts = [e for e in events if isinstance(e, TurnStarted)]
    assert [s.data.attempt for s in starts] == [1, 2]
    assert done.id == f"{run_id}:t1:2:completed:1"
    assert done.data.output == PLAIN
    # the identical action is not declared twice (the kernel would refuse it as a duplicate)
    assert len([e for e in events if isinstance(e, ActionDeclared)]) == 1


async def test_a_turn_running_at_shutdown_is_handed_back_and_finished_by_another_worker(
    bus: Bus, run_id: str
) -> None:
    text = '<response final="true">' + "step " * 100 + "</response>"
    first, stop = LlmPool(bus, TurnSettings(worker="first")), asyncio.Event()
    serving = asyncio.create_task(first.serve(stop, drain_s=0.05))
    await bus.publish_work("llm", turn_work(run_id, [{"text": text}], token_delay_s=0.01))
    await next_event(bus, run_id, of_type(TurnChunk))
    stop.set()
    await serving
    second, stop = LlmPool(bus, TurnSettings(worker="second")), asyncio.Event()
    serving = asyncio.create_task(second.serve(stop))
    try:
        done = await next_event(bus, run_id, of_type(TurnCompleted))
    finally:
        stop.set()
        await serving
    starts = [e for e in await worker_events(bus, run_id) if isinstance(e, TurnStarted)]
    assert [(s.data.worker, s.data.attempt) for s in starts] == [("first", 1), ("second", 2)]
    assert done.id.startswith(f"{run_id}:t1:2:") and done.data.output == text


async def test_llm_actions_are_refused_clearly(bus: Bus, pool: LlmPool, run_id: str) -> None:
    item = ActionWork(
        run_id=run_id, causation_id="x", action_id="a1", type="llm", name="summarize", params={}
    )
    await bus.publish_work("llm", item)
    failed = await next_event(bus, run_id, of_type(ActionFailed))
    assert failed.data.action_id == "a1" and failed.data.code == "unsupported_action"


async def test_cortex_worker_llm_serves_turns_and_stops_on_sigterm(
    bus: Bus, nats_server: NatsProcess, run_id: str, tmp_path: Any
) -> None:
    env = {**os.environ, "CORTEX_NATS_URL": nats_server.url, "CORTEX_HOME": str(tmp_path)}
    with open(tmp_path / "worker.log", "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cortex.cli.main", "worker", "llm", "--concurrency", "2",
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
    try:
        await bus.publish_work("llm", turn_work(run_id, [{"text": PLAIN}]))
        done = await next_event(bus, run_id, of_type(TurnCompleted), timeout_s=60)
        assert done.data.output == PLAIN
        started = next(e for e in await worker_events(bus, run_id) if isinstance(e, TurnStarted))
        assert started.data.worker.startswith("llm-")
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
