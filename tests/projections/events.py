"""Event logs for projection tests: the kernel's golden run, and a run with the pools' chatter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from cortex.bus import events as ev
from cortex.bus.events import AnyEvent, Event
from cortex.projections.progressions import ProgressionView, fold_progression
from cortex.projections.runs import RunView, fold_run
from cortex.specs import AgentSpec, ToolSpec
from tests.kernel.golden import GOLDEN

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def golden_events() -> list[Event]:
    """The events of the recorded golden run (inputs and decisions, in log order; commands left out)."""
    out = []
    for line in GOLDEN.read_bytes().splitlines():
        item = msgspec.json.decode(line)["item"]
        if "command" not in item:
            out.append(msgspec.convert(item, AnyEvent))
    return out


class Log:
    """Builds one run's events with ids and times one second apart."""

    def __init__(self, run_id: str, agent: str = "writer", start: datetime = T0) -> None:
        self.run_id = run_id
        self.agent = agent
        self.start = start
        self.events: list[Event] = []

    def add(self, cls: type[Event], data_cls: type, **data: Any) -> Event:
        """Append an event of ``cls`` with ``data``."""
        n = len(self.events) + 1
        event = cls(id=f"{self.run_id}:e{n}", run_id=self.run_id, time=self.start + timedelta(seconds=n), data=data_cls(**data))
        self.events.append(event)
        return event

    def requested(self, message: str = "Write a haiku about NATS.", **data: Any) -> Event:
        """``run.requested`` for the agent."""
        spec = AgentSpec(name=self.agent, tools=(ToolSpec(name="text.count"),))
        return self.add(ev.RunRequested, ev.RunRequestedData, agent=spec, message=message, **data)


def chatty_run(run_id: str = "r-chat", agent: str = "writer") -> list[Event]:
    """A two-turn run with thoughts, a waiting action, progress, a failure and a streamed final answer."""
    log = Log(run_id, agent, start=T0 + timedelta(minutes=1))
    log.requested()
    log.add(ev.RunStarted, ev.RunStartedData, agent=agent)
    log.add(ev.TurnRequested, ev.TurnRequestedData, turn_id="t1", iteration=1, provider="scripted", model="m", messages=())
    log.add(ev.TurnStarted, ev.TurnStartedData, turn_id="t1", worker="llm-1")
    log.add(ev.ThoughtDelta, ev.TextDeltaData, turn_id="t1", text="Count the ")
    log.add(ev.ThoughtDelta, ev.TextDeltaData, turn_id="t1", text="words first.")
    log.add(ev.ActionDeclared, ev.ActionDeclaredData, turn_id="t1", action_id="count", type="tool", name="text.count",
            params={"text": "nats is fast"})
    log.add(ev.ActionScheduled, ev.ActionDecisionData, action_id="count", reason="dependencies_met", pool="tool")
    log.add(ev.ActionStarted, ev.ActionStartedData, action_id="count", worker="tool-1")
    log.add(ev.ActionProgress, ev.ActionProgressData, action_id="count", message="half way", fraction=0.5)
    log.add(ev.ThoughtDelta, ev.TextDeltaData, turn_id="t1", text="Then check.")
    log.add(ev.ActionDeclared, ev.ActionDeclaredData, turn_id="t1", action_id="check", type="tool", name="text.count",
            params={"text": "$count"}, refs=("count",))
    log.add(ev.ActionWaiting, ev.ActionDecisionData, action_id="check", reason="waiting_on_dependencies",
            waiting_on=("count",))
    log.add(ev.ResponseDelta, ev.TextDeltaData, turn_id="t1", text="Working on it")
    log.add(ev.TurnCompleted, ev.TurnCompletedData, turn_id="t1", stop_reason="end", output="...",
            usage=ev.Usage(100, 20), latency_ms=900.0)
    log.add(ev.ActionCompleted, ev.ActionCompletedData, action_id="count", result={"words": 3}, latency_ms=12.5)
    log.add(ev.ActionScheduled, ev.ActionDecisionData, action_id="check", reason="dependencies_met", pool="tool")
    log.add(ev.ActionStarted, ev.ActionStartedData, action_id="check", worker="tool-2")
    log.add(ev.ActionFailed, ev.ActionFailedData, action_id="check", code="tool_error", error="boom", latency_ms=3.0)
    log.add(ev.TurnRequested, ev.TurnRequestedData, turn_id="t2", iteration=2, provider="scripted", model="m", messages=())
    log.add(ev.TurnStarted, ev.TurnStartedData, turn_id="t2", worker="llm-1")
    log.add(ev.ResponseDelta, ev.TextDeltaData, turn_id="t2", text="Streams ", final=True)
    log.add(ev.ResponseDelta, ev.TextDeltaData, turn_id="t2", text="persist.", final=True)
    log.add(ev.TurnChunk, ev.TurnChunkData, turn_id="t2", seq=1, text="raw")
    log.add(ev.TurnCompleted, ev.TurnCompletedData, turn_id="t2", stop_reason="end", output="...",
            usage=ev.Usage(150, 30), latency_ms=700.0)
    log.add(ev.RunCompleted, ev.RunCompletedData, response="Streams persist.", usage=ev.Usage(250, 50))
    return log.events


def plugin_event(kind: str, plugin: str, worker: str, at: datetime, version: str = "1.0.0") -> Event:
    """A plugin lifecycle event (``registered``, ``heartbeat`` or ``unregistered``) on the system stream."""
    cls = {"registered": ev.PluginRegistered, "heartbeat": ev.PluginHeartbeat, "unregistered": ev.PluginUnregistered}[kind]
    tools = (ToolSpec(name=f"{plugin}.run", description="Run it.", side_effects="write", idempotent=False),)
    data = ev.PluginData(plugin=plugin, worker_id=worker, version=version, tools=tools,
                         permissions={"network": ["example.org"]})
    return cls(id=f"{plugin}:{worker}:{kind}:{at.timestamp()}", time=at, data=data)


def fold_all(events: list[Event], twice: bool = False) -> tuple[RunView | None, ProgressionView | None]:
    """The run and progression views of a log, each event numbered by its position (folded twice if asked)."""
    run = progression = None
    for seq, event in enumerate(events, start=1):
        for _ in range(2 if twice else 1):
            run = fold_run(run, event, seq)
            progression = fold_progression(progression, event, seq)
    return run, progression
