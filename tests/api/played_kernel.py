"""A played kernel for API and CLI tests: answers every user message of every run from a small script.

It stands in for the kernel and the llm pool (the system under test is the API or the CLI, which
only publish requests and read events). What it answers depends on the message:

- contains ``fail``: ``run.failed`` (code ``turn_failed``);
- contains ``hang``: nothing until ``cancel.requested``, then ``run.cancelled``;
- contains ``ref``: a final response ``The time is $now.`` that completes as ``The time is 12:00.``;
- anything else: a thought, one action (declared, scheduled, started, completed) and the final
  response ``You said: <message>``, with usage 11 prompt + 7 completion tokens per answer.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import pytest

from cortex.bus.client import Bus
from cortex.bus.events import (
    ActionCompleted, ActionCompletedData, ActionDeclared, ActionDeclaredData, ActionDecisionData,
    ActionScheduled, ActionStarted, ActionStartedData, Event, ResponseDelta, RunCancelled, RunCancelledData,
    RunCompleted, RunCompletedData, RunFailed, RunFailedData, RunStarted, RunStartedData, TextDeltaData,
    ThoughtDelta, TurnCompleted, TurnCompletedData, TurnRequested, TurnRequestedData, Usage,
)
from cortex.manifests.store import ManifestStore
from cortex.runs import cancel_and_wait
from cortex.specs import AgentSpec

USAGE = Usage(prompt_tokens=11, completion_tokens=7)


async def apply_agent(bus: Bus, name: str = "echo") -> AgentSpec:
    """Store an agent in the manifests bucket, as `cortex apply` would."""
    spec = AgentSpec(name=name, provider="scripted", model="script")
    await ManifestStore(bus).put("agent", name, spec)
    return spec


class PlayedKernel:
    """Watch every run's events and answer ``run.requested`` / ``message.received``; honour cancels."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.turns: dict[str, int] = defaultdict(int)
        self.answered: list[str] = []
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "PlayedKernel":
        self._task = asyncio.create_task(self._serve())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        await cancel_and_wait(self._task)

    async def _serve(self) -> None:
        async for event, _seq in self.bus.watch("cortex.evt.>", from_start=True):
            if event.type == "run.requested":
                await self._answer(event, event.data.message, first=True)
            elif event.type == "message.received":
                await self._answer(event, event.data.text, first=False)
            elif event.type == "cancel.requested":
                await self._emit(event, [(RunCancelled, RunCancelledData(reason=event.data.reason))])

    async def _emit(self, trigger: Event, items: list[tuple[type[Event], Any]]) -> None:
        for n, (cls, data) in enumerate(items, 1):
            await self.bus.publish_event(cls(
                id=f"{trigger.id}:play:{n}", run_id=trigger.run_id, time=datetime.now(timezone.utc),
                causation_id=trigger.id, correlation_id=trigger.run_id, data=data,
            ))

    async def _answer(self, trigger: Event, text: str, *, first: bool) -> None:
        run_id = trigger.run_id
        self.turns[run_id] += 1
        turn = f"t{self.turns[run_id]}"
        items: list[tuple[type[Event], Any]] = []
        if first:
            items.append((RunStarted, RunStartedData(agent=trigger.data.agent.name)))
        if "fail" in text:
            items.append((RunFailed, RunFailedData(code="turn_failed", reason="scripted failure")))
        elif "hang" not in text:
            items += self._turn(turn, text)
        self.answered.append(text)
        await self._emit(trigger, items)

    @staticmethod
    def _turn(turn: str, text: str) -> list[tuple[type[Event], Any]]:
        if "ref" in text:
            pieces, answer = ["The time ", "is $now."], "The time is 12:00."
        else:
            pieces, answer = ["You said: ", text], f"You said: {text}"
        return [
            (TurnRequested, TurnRequestedData(turn_id=turn, iteration=1, provider="scripted", model="script",
                                              messages=())),
            (ThoughtDelta, TextDeltaData(turn_id=turn, text="Let me check the time.")),
            (ActionDeclared, ActionDeclaredData(turn_id=turn, action_id="now", type="tool", name="clock.now")),
            (ActionScheduled, ActionDecisionData(action_id="now", reason="dependencies_met", pool="tool")),
            (ActionStarted, ActionStartedData(action_id="now", worker="tool-1")),
            (ActionCompleted, ActionCompletedData(action_id="now", result="12:00", latency_ms=12.5)),
            *[(ResponseDelta, TextDeltaData(turn_id=turn, text=piece, final=True)) for piece in pieces],
            (TurnCompleted, TurnCompletedData(turn_id=turn, stop_reason="end", output="...", usage=USAGE)),
            (RunCompleted, RunCompletedData(response=answer, usage=USAGE)),
        ]


@pytest.fixture
async def kernel(bus: Bus) -> AsyncIterator[PlayedKernel]:
    """The agent ``echo`` applied and a played kernel answering its runs."""
    await apply_agent(bus, "echo")
    async with PlayedKernel(bus) as played:
        yield played
