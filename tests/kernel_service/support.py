"""What the kernel service tests share: an agent, pools played by the test, kernel processes, checks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg

from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.consumer import DurableConsumer
from cortex.bus.events import (
    ActionCompleted,
    ActionCompletedData,
    ActionDeclared,
    ActionDeclaredData,
    Event,
    RunRequested,
    RunRequestedData,
    TurnCompleted,
    TurnCompletedData,
    Usage,
)
from cortex.bus.work import ActionWork, AnyWork, TurnWork
from cortex.kernel.decider import DECISION_INPUTS, RunState, step
from cortex.specs import AgentSpec, Limits, ToolSpec
from cortex.workers.base import make_event, pool_consumer

ROOT = Path(__file__).resolve().parents[2]

ECHO = ToolSpec(
    name="echo",
    params_schema={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
)


def agent(*, timeout_s: float = 120.0, tools: tuple[ToolSpec, ...] = (ECHO,)) -> AgentSpec:
    """A scripted agent with the echo tool."""
    return AgentSpec(
        name="echoer", provider="scripted", model="m", system_prompt="You echo.", tools=tools,
        limits=Limits(action_timeout_s=timeout_s),
    )


def now() -> datetime:
    """The current time in UTC."""
    return datetime.now(timezone.utc)


def run_requested(run_id: str, spec: AgentSpec | None = None, message: str = "echo twice") -> RunRequested:
    """The fact that starts a run (a globally unique id, as every input needs)."""
    return RunRequested(
        id=f"req-{run_id}", run_id=run_id, time=now(), correlation_id=run_id,
        data=RunRequestedData(agent=spec or agent(), message=message),
    )


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 30.0,
                     what: str = "condition") -> None:
    """Poll an async predicate until it holds; AssertionError after the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not met within {timeout_s:g}s")
        await asyncio.sleep(0.1)


async def count(bus: Bus, filter_subject: str) -> int:
    """How many messages the events stream holds on ``filter_subject``."""
    info = await bus.js.stream_info(subjects.EVENTS_STREAM, subjects_filter=filter_subject)
    return sum((info.state.subjects or {}).values())


@dataclass
class Pools:
    """The llm and tool pools, played by the test: real durable pool consumers, scripted answers.

    Turn 1 declares ``actions`` echo actions (action.declared, then turn.completed with the
    raw output); turn 2 answers with a final response that references them. The tool pool
    echoes the text back after ``tool_delay_s``. Event ids derive from the work item, as a
    real worker's do, so a repeated work item repeats the same events.
    """

    bus: Bus
    actions: int = 2
    tool_delay_s: float = 0.0
    answer_tools: bool = True
    published: set[str] = field(default_factory=set)
    handled: Counter[str] = field(default_factory=Counter)
    _consumers: list[DurableConsumer[AnyWork]] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> "Pools":
        """Start consuming ``cortex.work.llm`` and ``cortex.work.tool``."""
        for pool, handler in (("llm", self._turn), ("tool", self._tool)):
            consumer = pool_consumer(self.bus, pool, handler, concurrency=32, ack_wait_s=5.0)
            self._consumers.append(consumer)
            self._tasks.append(asyncio.create_task(consumer.run()))
        return self

    async def stop(self) -> None:
        """Stop both pools."""
        for consumer in self._consumers:
            consumer.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _publish(self, event: Event) -> None:
        self.published.add(event.id)
        await self.bus.publish_event(event)

    async def _turn(self, work: AnyWork, msg: Msg) -> None:
        assert isinstance(work, TurnWork)
        self.handled[work.msg_id] += 1
        turn_id = work.request.turn_id
        prefix = f"{work.run_id}:{turn_id}"
        if work.request.iteration == 1:
            parts = []
            for i in range(1, self.actions + 1):
                data = ActionDeclaredData(
                    turn_id=turn_id, action_id=f"a{i}", type="tool", name="echo",
                    params={"text": f"hello {i}"},
                )
                await self._publish(make_event(ActionDeclared, work, data, event_id=f"{prefix}:declared:{i}"))
                parts.append(f'<action type="tool" name="echo" id="a{i}">{{"text": "hello {i}"}}</action>')
            output = "".join(parts)
        elif self.answer_tools:
            refs = " ".join(f"$a{i}.text" for i in range(1, self.actions + 1))
            output = f'<response final="true">done: {refs}</response>'
        else:
            output = '<response final="true">done</response>'
        data = TurnCompletedData(turn_id=turn_id, stop_reason="end", output=output, usage=Usage(10, 5))
        await self._publish(make_event(TurnCompleted, work, data, event_id=f"{prefix}:completed"))

    async def _tool(self, work: AnyWork, msg: Msg) -> None:
        assert isinstance(work, ActionWork)
        self.handled[work.msg_id] += 1
        if not self.answer_tools:
            return
        if self.tool_delay_s:
            await asyncio.sleep(self.tool_delay_s)
        data = ActionCompletedData(action_id=work.action_id, result=dict(work.params), attempt=work.attempt)
        event_id = f"{work.run_id}:{work.action_id}:{work.attempt}:completed"
        await self._publish(make_event(ActionCompleted, work, data, event_id=event_id))


def expected_response(actions: int) -> str:
    """The final response of a run the Pools played."""
    return "done: " + " ".join(f"hello {i}" for i in range(1, actions + 1))


async def run_log(bus: Bus, run_id: str) -> list[Event]:
    """Every event of a run, in log order."""
    return (await bus.read_run(run_id)).events


def check_exactly_once(log: list[Event], inputs: set[str]) -> int:
    """Assert the kernel's events in ``log`` are exactly what one kernel deciding alone would write.

    ``inputs`` are the ids of the events published from outside the kernel (client, pools);
    ``timer.fired`` events count as inputs too. Feeding the inputs, in log order, through
    ``step`` from an empty state must reproduce every kernel event byte for byte, none missing
    and none twice. Returns the number of kernel events.
    """
    inputs = inputs | {event.id for event in log if event.type == "timer.fired"}
    ids = Counter(event.id for event in log)
    assert not [i for i, n in ids.items() if n > 1], f"events stored twice: {[i for i, n in ids.items() if n > 1]}"
    written = {event.id: event for event in log if event.id not in inputs}
    state, expected = RunState(), {}
    for event in log:
        if event.id not in inputs:
            continue
        assert event.type in DECISION_INPUTS, event.type
        decision = step(state, event)
        state = decision.state
        expected.update({out.id: out for out in decision.outputs if isinstance(out, Event)})
    assert sorted(written) == sorted(expected)
    assert all(written[i] == expected[i] for i in expected), "a decision differs from a replay"
    return len(written)


@dataclass
class KernelProcess:
    """``cortex kernel`` as a subprocess on a NATS URL."""

    url: str
    log_dir: Path
    ack_wait_s: float = 2.0
    proc: subprocess.Popen[str] | None = None
    name: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    @property
    def log_path(self) -> Path:
        """Where the process's stderr goes."""
        return self.log_dir / f"kernel-{self.name}.log"

    def start(self) -> "KernelProcess":
        """Start the process and wait until it consumes."""
        env = {**os.environ, "CORTEX_NATS_URL": self.url, "PYTHONPATH": str(ROOT)}
        with open(self.log_path, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cortex.cli.main", "kernel", "--ack-wait", str(self.ack_wait_s)],
                env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "deciding" in line, f"kernel did not start: {line!r} {self.log_path.read_text()}"
        return self

    def kill(self) -> None:
        """kill -9, as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()

    def stop(self) -> dict[str, Any]:
        """SIGTERM, wait for the exit, return the counters it printed."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=30)
        err = self.log_path.read_text()
        assert self.proc.returncode == 0, err
        line = next(line for line in err.splitlines() if "stopped" in line)
        return json.loads(line.split("stopped ", 1)[1])
