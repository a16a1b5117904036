"""End-to-end benchmark: scripted scenarios through a real kernel, llm pool and tool pool, against
the streaming lower bound.

Run: ``.venv/bin/python bench/e2e.py [--reps 5] [--in-process] [--overhead-streamed]``. Starts its
own nats-server on a free port, then ``cortex kernel``, ``cortex worker llm`` and ``cortex worker
tool`` (serving the bench plugin ``bench/e2e/plugin.yaml``: ``e2e.wait`` sleeps ``ms``,
``e2e.noop`` returns at once) as processes, or the same three in this process with
``--in-process``.

Every scenario is ONE model turn of the scripted provider (time to first token 300 ms, then one
token every 20 ms): a thought in which every action takes exactly 25 tokens of the stream (a few
words of thought as padding, the ``<action>`` element, a newline; ids are the generated ``a<N>``,
which keeps an action with two dependencies within 25 tokens), then a final response that
references results (``$a4.slept_ms``). The kernel ends the run once the turn is over and every
action has finished, so no second turn is needed.

- fan-out: 3 fetches (``e2e.wait`` 300/300/200 ms), then 2 extracts of 150 ms: ``a4`` depends on
  the first two fetches (``depends_on="a1,a2"``), ``a5`` on the third;
- chain: 4 steps of 200 ms, each ``depends_on`` the one before;
- wide: 16 independent calls of 100 ms;
- overhead: 200 ``e2e.noop`` calls; 200 x 25 tokens at 20 ms would stream for 100 s, so it runs
  with ``token_delay_s = 0`` (all 5,000 tokens at once after the 300 ms) and the figure is
  Cortex's overhead per call; ``--overhead-streamed`` also runs it once with the real pacing.
- the ``/burst`` rows run fan-out, chain and wide with ``token_delay_s = 0`` too: then the DAG,
  not the stream, is the critical path (and wide really has 16 calls in flight).

Lower bound (computed from the script text with the provider's own tokenizer): action *i* is
declared when the token holding the ``>`` of its ``</action>`` streams, ``t_i = ttft + k_i x
token_delay`` (``k_i`` its 0-based token index, exactly the provider's schedule); it starts at
``max(t_i, end of its dependencies)`` and ends ``latency_i`` later; the bound is the later of the
last token and the last end. Wall time runs from just before ``run.requested`` is published to
``run.completed`` arriving on a plain subscription of the run. Where the rest goes is read from
the JetStream store timestamps of the run's events (same clock) and a plain subscription on
``cortex.work.tool`` (when each work item went out): see ``breakdown`` and ``STAGES``;
``--verbose`` prints each run's timeline. Figures and findings: bench/README.md, "End to end".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.support and the plugin module bench.e2e.tools

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy  # noqa: E402

from cortex.adapters.llm.scripted import count_tokens, tokenize  # noqa: E402
from cortex.adapters.tools import load_runtime  # noqa: E402
from cortex.bus import subjects  # noqa: E402
from cortex.bus.client import Bus  # noqa: E402
from cortex.bus.events import RunRequested, RunRequestedData, decode  # noqa: E402
from cortex.bus.work import ActionWork, decode_work  # noqa: E402
from cortex.manifests.plugin import load_plugin_manifest  # noqa: E402
from cortex.specs import AgentSpec, Limits, ToolSpec  # noqa: E402
from bench.support import wait_registered  # noqa: E402
from tests.support.nats import NatsProcess  # noqa: E402

PLUGIN = REPO / "bench" / "e2e" / "plugin.yaml"
TTFT_S = 0.3
TOKEN_DELAY_S = 0.02
TOKENS_PER_ACTION = 25
GOAL = 1.02
TOOL_CONCURRENCY = 256
LLM_CONCURRENCY = 4
FILLER = "then we call the next tool now with these params and go on with the plan as written here".split()
HEAD = "<thought>Plan.\n"
TERMINAL = ("run.completed", "run.failed", "run.cancelled")


# ---- scenarios and their lower bound ------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One action of a scenario: tool ``e2e.wait`` (``ms`` > 0) or ``e2e.noop`` (ms 0), its dependencies."""

    ms: int
    deps: tuple[int, ...] = ()  # 1-based ordinals of earlier actions (their ids are a<N>)


@dataclass(frozen=True)
class Scenario:
    """A one-turn script: the actions, the final response's references, the pacing."""

    name: str
    steps: tuple[Step, ...]
    refs: tuple[str, ...]
    token_delay_s: float = TOKEN_DELAY_S
    ttft_s: float = TTFT_S
    text: str = ""
    ends: tuple[int, ...] = ()  # offset just past each action's closing tag

    def __post_init__(self) -> None:
        """Write the script text and remember where each action ends."""
        parts, ends, offset = [HEAD], [], len(HEAD)
        for n, step in enumerate(self.steps, 1):
            unit, end = action_unit(n, step)
            parts.append(unit)
            ends.append(offset + end)
            offset += len(unit)
        refs = ", ".join(self.refs)
        parts.append(f'</thought>\n<response final="true">Done: {refs}.</response>')
        text = "".join(parts)
        assert count_tokens(text) == sum(count_tokens(p) for p in parts), "tokens merge across units"
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "ends", tuple(ends))

    def declared_at(self) -> list[float]:
        """Seconds after the request at which each action's closing tag has streamed."""
        stops, pos = [], 0
        for token in tokenize(self.text):
            pos += len(token)
            stops.append(pos)
        out, k = [], 0
        for end in self.ends:
            while stops[k] < end:
                k += 1
            out.append(self.ttft_s + k * self.token_delay_s)
        return out

    def last_token_at(self) -> float:
        """Seconds after the request at which the last token streams."""
        return self.ttft_s + (count_tokens(self.text) - 1) * self.token_delay_s

    def bound(self) -> float:
        """The streaming lower bound of the run, in seconds."""
        ends: list[float] = []
        for step, declared in zip(self.steps, self.declared_at()):
            start = max([declared] + [ends[d - 1] for d in step.deps])
            ends.append(start + step.ms / 1000)
        return max([self.last_token_at(), *ends])

    def agent(self, tools: tuple[ToolSpec, ...]) -> AgentSpec:
        """The agent of this scenario (limits wide enough never to throttle it)."""
        options = {"script": [{"text": self.text}], "ttft_s": self.ttft_s, "token_delay_s": self.token_delay_s}
        limits = Limits(max_parallel_actions=256, max_tokens=16_384, max_iterations=1, action_timeout_s=60)
        return AgentSpec(name="e2e-" + self.name.replace("/", "-"), provider="scripted", model="e2e",
                         system_prompt="Benchmark.", tools=tools, limits=limits, provider_options=options)


def action_unit(n: int, step: Step) -> tuple[str, int]:
    """Padding words, the n-th action element and a newline: exactly TOKENS_PER_ACTION tokens.

    Returns the text and the offset just past ``</action>`` in it.
    """
    name, params = ("e2e.wait", {"ms": step.ms}) if step.ms else ("e2e.noop", {})
    deps = f' depends_on="{",".join(f"a{d}" for d in step.deps)}"' if step.deps else ""
    element = f'<action type="tool" name="{name}"{deps}>{json.dumps(params) if params else ""}</action>'
    for k in range(len(FILLER) + 1):
        pad = " ".join(FILLER[:k]) + " " if k else ""
        unit = pad + element + "\n"
        if count_tokens(unit) == TOKENS_PER_ACTION:
            return unit, len(pad) + len(element)
    raise ValueError(f"action {n} ({element}) cannot be padded to {TOKENS_PER_ACTION} tokens")


def scenarios(burst: bool, overhead_streamed: bool) -> list[Scenario]:
    """The suite: streamed fan-out, chain and wide; overhead (burst); the burst variants."""
    fan = (Step(300), Step(300), Step(200), Step(150, (1, 2)), Step(150, (3,)))
    chain = (Step(200),) + tuple(Step(200, (i,)) for i in range(1, 4))
    wide = tuple(Step(100) for _ in range(16))
    noops = tuple(Step(0) for _ in range(200))
    suite = [
        Scenario("fan-out", fan, ("$a4.slept_ms", "$a5.slept_ms")),
        Scenario("chain", chain, ("$a4.slept_ms",)),
        Scenario("wide", wide, ("$a1.slept_ms", "$a16.slept_ms")),
        Scenario("overhead", noops, ("$a200",), token_delay_s=0.0),
    ]
    if burst:
        suite += [
            Scenario("fan-out/burst", fan, ("$a4.slept_ms", "$a5.slept_ms"), token_delay_s=0.0),
            Scenario("chain/burst", chain, ("$a4.slept_ms",), token_delay_s=0.0),
            Scenario("wide/burst", wide, ("$a1.slept_ms", "$a16.slept_ms"), token_delay_s=0.0),
        ]
    if overhead_streamed:
        suite.append(Scenario("overhead/streamed", noops, ("$a200",)))
    return suite


# ---- playing one run ---------------------------------------------------------------------


@dataclass
class Sample:
    """One run: outcome, wall time, the store timestamps of its events, what was sent on the wire."""

    outcome: str
    wall: float
    t0: float
    events: list[tuple[float, Any]] = field(default_factory=list)  # (store time, event)
    sent: int = 0  # event messages seen on a core subscription of the run (stored or refused)
    dispatched: dict[str, float] = field(default_factory=dict)  # action id -> first tool work item seen
    dispatches: int = 0  # tool work items published (repeats are deduplicated by JetStream)


class WorkTap:
    """A core subscription on the tool pool's work subject: when each run's work items went out."""

    def __init__(self) -> None:
        self.runs: dict[str, Sample] = {}

    async def start(self, bus: Bus) -> None:
        """Subscribe (before any run starts)."""

        async def on_work(msg) -> None:  # noqa: ANN001 - nats Msg
            item = decode_work(msg.data)
            sample = self.runs.get(item.run_id)
            if sample is not None and isinstance(item, ActionWork):
                sample.dispatches += 1
                sample.dispatched.setdefault(item.action_id, time.time())

        await bus.nc.subscribe(subjects.work("tool"), cb=on_work)
        await bus.nc.flush()


async def stored_events(bus: Bus, run_id: str) -> list[tuple[float, Any]]:
    """The run's stored events with the time JetStream stored each (epoch seconds)."""
    filter_subject = subjects.run_events(run_id)
    config = ConsumerConfig(filter_subject=filter_subject, ack_policy=AckPolicy.NONE,
                            deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0, mem_storage=True)
    sub = await bus.js.pull_subscribe(filter_subject, stream=subjects.EVENTS_STREAM, config=config)
    out = []
    try:
        remaining = (await sub.consumer_info()).num_pending
        while remaining > 0:
            for msg in await sub.fetch(min(remaining, 512), timeout=5.0):
                remaining = msg.metadata.num_pending
                out.append((msg.metadata.timestamp.timestamp(), decode(msg.data)))
    finally:
        await sub.unsubscribe()
    return out


async def play(bus: Bus, tap: WorkTap, agent: AgentSpec, timeout_s: float) -> Sample:
    """Start one run of ``agent`` and wait for its end; the wall time and its stored events."""
    run_id = "e2e" + uuid.uuid4().hex[:16]
    done: asyncio.Future[tuple[str, float]] = asyncio.get_running_loop().create_future()
    sample = tap.runs[run_id] = Sample("", 0.0, 0.0)

    async def on_event(msg) -> None:  # noqa: ANN001 - nats Msg
        sample.sent += 1
        kind = msg.subject.split(".", 3)[3]
        if kind in TERMINAL and not done.done():
            done.set_result((kind, time.time()))

    sub = await bus.nc.subscribe(subjects.run_events(run_id), cb=on_event)
    await bus.nc.flush()
    event = RunRequested(id=f"{run_id}:requested", run_id=run_id, time=datetime.now(timezone.utc),
                         correlation_id=run_id, data=RunRequestedData(agent=agent, message="go"))
    t0 = time.time()
    try:
        await bus.publish_event(event, expected_last_seq=0)
        try:
            outcome, t_end = await asyncio.wait_for(done, timeout_s)
        except asyncio.TimeoutError:
            outcome, t_end = "timeout", time.time()
    finally:
        await sub.unsubscribe()
    await asyncio.sleep(0.05)  # let the last events be stored before reading
    del tap.runs[run_id]
    sample.outcome, sample.wall, sample.t0 = outcome, t_end - t0, t0
    sample.events = await stored_events(bus, run_id)
    return sample


# ---- where the time goes ------------------------------------------------------------------


def breakdown(scenario: Scenario, sample: Sample) -> dict[str, list[float]]:
    """Milliseconds per stage of one run, from the store timestamps (lists: one value per action)."""
    first: dict[tuple[str, str], float] = {}
    turn: dict[str, float] = {}
    for ts, event in sample.events:
        kind = event.type
        if kind.startswith("action."):
            first.setdefault((event.data.action_id, kind), ts)
        else:
            turn.setdefault(kind, ts)
    t0, started = sample.t0, turn.get("turn.started", sample.t0)
    out: dict[str, list[float]] = defaultdict(list)
    out["start"].append((started - t0) * 1000)
    ends: dict[int, float] = {}
    for n, (step, due) in enumerate(zip(scenario.steps, scenario.declared_at()), 1):
        aid = f"a{n}"
        declared = first.get((aid, "action.declared"))
        scheduled = first.get((aid, "action.scheduled"))
        began = first.get((aid, "action.started"))
        completed = first.get((aid, "action.completed"))
        if None in (declared, scheduled, began, completed):
            continue
        ends[n] = completed
        dispatched = sample.dispatched.get(aid, scheduled)
        out["declare lag"].append((declared - started - due) * 1000)
        ready = max([declared] + [ends[d] for d in step.deps if d in ends])
        out["kernel"].append((dispatched - ready) * 1000)
        out["stored"].append((scheduled - dispatched) * 1000)
        out["pickup"].append((began - dispatched) * 1000)
        out["tool"].append((completed - began) * 1000 - step.ms)
    last = max([turn.get("turn.completed", t0), *ends.values()])
    if "turn.completed" in turn:
        out["turn end lag"].append((turn["turn.completed"] - started - scenario.last_token_at()) * 1000)
    if "run.completed" in turn:
        out["finish"].append((turn["run.completed"] - last) * 1000)
    return out


def timeline(scenario: Scenario, sample: Sample) -> str:
    """One run, action by action: ms after run.requested at which each step happened (``--verbose``)."""
    at: dict[tuple[str, str], float] = {}
    for ts, event in sample.events:
        key = (getattr(event.data, "action_id", "") or "", event.type)
        at.setdefault(key, (ts - sample.t0) * 1000)
    kinds = ("turn.started", "turn.completed", "run.completed")
    marks = ", ".join(f"{kind} {at.get(('', kind), 0):.1f}" for kind in kinds)
    lines = [f"  run {sample.outcome} wall {sample.wall * 1000:.1f} ms; {marks}"]
    for n, due in enumerate(scenario.declared_at(), 1):
        aid = f"a{n}"
        sent = sample.dispatched.get(aid)
        steps = [("token", due * 1000), *((kind.split(".")[1], at.get((aid, kind))) for kind in (
            "action.declared", "action.waiting", "action.scheduled")),
            ("work", None if sent is None else (sent - sample.t0) * 1000),
            *((kind.split(".")[1], at.get((aid, kind))) for kind in ("action.started", "action.completed"))]
        lines.append(f"    {aid:<5}" + "  ".join(f"{name} {value:8.1f}" for name, value in steps if value is not None))
    return "\n".join(lines)


STAGES = (
    ("start", "run.requested published -> turn.started stored"),
    ("declare lag", "action.declared stored - (turn.started + the token time of its closing tag)"),
    ("kernel", "work item seen - max(action.declared, last dependency's action.completed) stored"),
    ("stored", "action.scheduled stored - work item seen (a decision's work goes out before its events)"),
    ("pickup", "action.started stored - work item seen (through the work stream into the tool pool)"),
    ("tool", "action.completed - action.started - the tool's own latency"),
    ("turn end lag", "turn.completed - (turn.started + last token time)"),
    ("finish", "run.completed - max(turn.completed, last action.completed)"),
)


# ---- the deployment under test ------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc), 0.0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def as_processes(url: str, logs: Path) -> AsyncIterator[dict[str, int]]:
    """``cortex kernel``, ``cortex worker llm`` and ``cortex worker tool`` processes; yields their pids."""
    env = {**os.environ, "CORTEX_NATS_URL": url, "PYTHONPATH": str(REPO), "CORTEX_HOME": str(logs / "home")}
    commands = {
        "kernel": ["kernel"],
        "llm": ["worker", "llm", "--concurrency", str(LLM_CONCURRENCY)],
        "tool": ["worker", "tool", "--no-builtins", "--plugins", str(PLUGIN),
                 "--concurrency", str(TOOL_CONCURRENCY)],
    }
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, words in commands.items():
            with open(logs / f"{name}.log", "wb") as log:
                procs[name] = subprocess.Popen([sys.executable, "-m", "cortex.cli.main", *words], cwd=REPO,
                                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        yield {name: proc.pid for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@contextlib.asynccontextmanager
async def in_process(url: str) -> AsyncIterator[dict[str, int]]:
    """The kernel, the llm pool and the tool pool in this process (own connections, one event loop)."""
    from cortex.kernel.service import Kernel
    from cortex.workers.base import worker_id
    from cortex.workers.llm_pool import LlmPool
    from cortex.workers.tool_pool import add_arguments, serve
    from cortex.workers.turn_runner import TurnSettings

    buses = [await Bus.connect(url, name=name) for name in ("kernel", "llm", "tool")]
    kernel = Kernel(buses[0])
    stop = asyncio.Event()
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    tool_args = parser.parse_args(["--no-builtins", "--plugins", str(PLUGIN), "--concurrency", str(TOOL_CONCURRENCY)])
    llm = LlmPool(buses[1], TurnSettings(worker=worker_id("llm")), concurrency=LLM_CONCURRENCY)
    tasks = [asyncio.create_task(kernel.run()), asyncio.create_task(llm.serve(stop)),
             asyncio.create_task(serve(buses[2], tool_args, stop))]
    try:
        await asyncio.wait_for(kernel.ready.wait(), 30)
        yield {"bench+pools": os.getpid()}
    finally:
        stop.set()
        kernel.stop()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        for bus in buses:
            await bus.close()


async def plugin_tools() -> tuple[ToolSpec, ...]:
    """The tool specs of the bench plugin, as the tool worker announces them."""
    runtime = load_runtime(load_plugin_manifest(PLUGIN))
    await runtime.start()
    try:
        return tuple(runtime.tools())
    finally:
        await runtime.close()


# ---- report ------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    """The median (0.0 for none)."""
    return statistics.median(values) if values else 0.0


def report(scenario: Scenario, samples: list[Sample], cpu: dict[str, float]) -> dict[str, Any]:
    """Print one scenario's figures; return them."""
    bound = scenario.bound()
    ok = [s for s in samples if s.outcome == "run.completed"]
    walls = sorted(s.wall for s in ok)
    failed = len(samples) - len(ok)
    if not walls:
        print(f"{scenario.name:<18} bound {bound:7.3f} s   no run completed ({[s.outcome for s in samples]})")
        return {"name": scenario.name, "bound": bound}
    wall = median(walls)
    n_actions = len(scenario.steps)
    print(f"{scenario.name:<18} bound {bound:7.3f} s  wall p50 {wall:7.3f} s  (min {walls[0]:.3f}, max "
          f"{walls[-1]:.3f}, n={len(walls)}{f', FAILED {failed}' if failed else ''})  ratio {wall / bound:.3f}  "
          f"overhead {(wall - bound) * 1000:7.1f} ms  = {(wall - bound) * 1000 / n_actions:.2f} ms/action")
    stages: dict[str, list[float]] = defaultdict(list)
    for sample in ok:
        for key, values in breakdown(scenario, sample).items():
            stages[key].extend(values)
    parts = [f"{key} {median(stages[key]):.1f}" for key, _ in STAGES if stages.get(key)]
    tail = [f"{key} p90 {sorted(stages[key])[int(len(stages[key]) * 0.9)]:.1f}" for key in ("kernel", "pickup")
            if len(stages.get(key, [])) >= 10]
    print(f"{'':<18} p50 ms: " + ", ".join(parts) + (f"; {', '.join(tail)}" if tail else ""))
    refused = sum(s.sent - len(s.events) for s in ok) / len(ok)
    redispatched = sum(s.dispatches - len(s.dispatched) for s in ok) / len(ok)
    print(f"{'':<18} per run: {refused:.0f} event publishes refused (run moved on: kernel conflicts), "
          f"{redispatched:.0f} work items sent again (deduplicated)")
    if cpu:
        per_run = ", ".join(f"{name} {seconds * 1000 / len(samples):.0f}" for name, seconds in cpu.items())
        print(f"{'':<18} CPU ms per run: {per_run}")
    return {"name": scenario.name, "bound": bound, "wall": wall, "ratio": wall / bound, "n": len(walls)}


async def main(ns: argparse.Namespace) -> None:
    """Start a server and the components, play the suite, print the figures, stop everything."""
    suite = scenarios(not ns.no_burst, ns.overhead_streamed)
    if ns.only:
        suite = [s for s in suite if s.name in ns.only.split(",")]
    mode = "in-process" if ns.in_process else "processes"
    print(f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}, mode {mode}, "
          f"ttft {TTFT_S * 1000:.0f} ms, {TOKEN_DELAY_S * 1000:.0f} ms/token, {TOKENS_PER_ACTION} tokens/action, "
          f"{ns.reps} reps")
    tools = await plugin_tools()
    with tempfile.TemporaryDirectory(prefix="cortex-bench-e2e-") as tmp:
        base = Path(tmp)
        server = NatsProcess(store_dir=base / "js").start()
        try:
            bus = await Bus.connect(server.url, name="bench")
            await bus.provision()
            deployment = in_process(server.url) if ns.in_process else as_processes(server.url, base)
            async with deployment as pids:
                assert server.proc is not None
                pids = {**pids, "nats-server": server.proc.pid}
                await wait_registered(bus, "e2e")
                tap = WorkTap()
                await tap.start(bus)
                warm = next(s for s in scenarios(True, False) if s.name == "fan-out/burst")
                for _ in range(2):
                    sample = await play(bus, tap, warm.agent(tools), 60)
                    if sample.outcome != "run.completed":
                        raise SystemExit(f"warm-up run ended with {sample.outcome}; logs in {base}")
                samples: dict[str, list[Sample]] = defaultdict(list)
                cpu: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
                for rep in range(ns.reps):
                    for scenario in suite:
                        if scenario.name == "overhead/streamed" and rep:
                            continue
                        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                        sample = await play(bus, tap, scenario.agent(tools), scenario.bound() + 120)
                        samples[scenario.name].append(sample)
                        if ns.verbose:
                            print(f"{scenario.name} (bound {scenario.bound() * 1000:.1f} ms)")
                            print(timeline(scenario, sample))
                        for name, pid in pids.items():
                            cpu[scenario.name][name] += cpu_seconds(pid) - before[name]
                print()
                rows = [report(s, samples[s.name], cpu[s.name]) for s in suite]
                print()
                print("stages (p50 over every action of every run, ms):")
                for key, meaning in STAGES:
                    print(f"  {key:<13} {meaning}")
                print()
                print("| scenario | bound s | wall p50 s | ratio | overhead ms | goal <= 1.02 |")
                print("|---|---|---|---|---|---|")
                for row in rows:
                    if "wall" in row:
                        met = "yes" if row["ratio"] <= GOAL else "no"
                        print(f"| {row['name']} | {row['bound']:.3f} | {row['wall']:.3f} | {row['ratio']:.3f} | "
                              f"{(row['wall'] - row['bound']) * 1000:.0f} | {met} |")
            await bus.close()
        finally:
            server.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="runs per scenario (default 5; p50 reported)")
    parser.add_argument("--in-process", action="store_true",
                        help="run kernel, llm pool and tool pool in this process instead of as cortex processes")
    parser.add_argument("--no-burst", action="store_true", help="skip the token_delay 0 variants of fan-out/chain/wide")
    parser.add_argument("--overhead-streamed", action="store_true",
                        help="also run overhead once with the real pacing (200 x 25 tokens x 20 ms: ~100 s)")
    parser.add_argument("--verbose", action="store_true", help="print every run's timeline, action by action")
    parser.add_argument("--only", default="", help="comma-separated scenario names to run")
    asyncio.run(main(parser.parse_args()))
