"""The llm pool with the real local model (Gemma 3 270M in process): sync injection end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cortex.bus.client import Bus
from cortex.bus.events import (
    ActionCompleted,
    ActionCompletedData,
    ActionDeclared,
    ChatMessage,
    TurnCompleted,
)
from cortex.kernel.protocol import ActionDeclared as Declared, ParseError, Parser, ResponseDelta
from cortex.specs import ToolSpec
from cortex.workers.llm_pool import LlmPool
from cortex.workers.turn_runner import TurnSettings
from tests.workers.test_llm_pool import kernel_event, next_event, of_type, texts, turn_work, worker_events

pytestmark = pytest.mark.local_model

CLOCK = ToolSpec(
    name="clock.now",
    description="the current time in a time zone",
    params_schema={
        "type": "object",
        "properties": {"tz": {"type": "string", "maxLength": 20}},
        "required": ["tz"],
    },
)
SYSTEM = (
    'You tell the time. Call the tool first: <action type="tool" name="clock.now" id="a1" '
    'mode="sync">{"tz": "UTC"}</action>. Always use mode="sync". After its <action_result>, '
    'answer with <response final="true">the time</response>.'
)
# One action at most, no thought, short texts: valid protocol by construction, and quick.
GRAMMAR = {"max_actions": 1, "max_text": 40, "allow_thought": False}


@pytest.fixture
async def pool(bus: Bus) -> AsyncIterator[LlmPool]:
    """A running llm pool whose local model is loaded once per test."""
    worker = LlmPool(bus, TurnSettings(worker="test-local"))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.serve(stop, drain_s=30.0))
    try:
        yield worker
    finally:
        stop.set()
        await task


async def test_the_local_model_continues_after_an_injected_sync_result_in_the_same_turn(
    bus: Bus, pool: LlmPool, run_id: str
) -> None:
    messages = (
        ChatMessage("system", SYSTEM),
        ChatMessage("user", "What time is it in UTC?"),
    )
    work = turn_work(
        run_id, provider="local", messages=messages, tools=(CLOCK,), max_tokens=96,
        options={"grammar": GRAMMAR},
    )  # fmt: skip
    await bus.publish_work("llm", work)
    declared = await next_event(bus, run_id, of_type(ActionDeclared), timeout_s=180)
    assert declared.data.mode == "sync" and declared.data.name == "clock.now"
    result = ActionCompletedData(action_id=declared.data.action_id, result="12:34", latency_ms=2)
    await bus.publish_event(kernel_event(ActionCompleted, run_id, "clock-done", result))
    done = await next_event(bus, run_id, of_type(TurnCompleted), timeout_s=180)

    output = done.data.output
    block = (
        f'<action_result id="{declared.data.action_id}" status="ok" latency_ms="2">'
        "<![CDATA[12:34]]></action_result>"
    )
    head, sep, tail = output.partition(block)
    assert sep, output  # the result was injected into this turn's output ...
    assert head.rstrip().endswith("</action>")  # ... right after the action's closing tag
    assert done.data.stop_reason == "end_turn", output
    # ... and the model went on writing in the same turn: a final response after the result
    parser = Parser()
    after = [*parser.feed(tail), *parser.close()]
    assert not [e for e in after if isinstance(e, (ParseError, Declared))], tail
    answer = "".join(e.text for e in after if isinstance(e, ResponseDelta) and e.final)
    assert answer.strip(), tail
    events = await worker_events(bus, run_id)
    assert [e.type for e in events].count("turn.started") == 1
    assert texts(events, "turn.chunk") == output
    assert texts(events, "response.delta") == answer
    assert done.data.usage.completion_tokens <= 96 and done.data.usage.prompt_tokens > 0
