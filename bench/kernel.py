"""Kernel benchmark: decision inputs per second per kernel (one and two kernels), decision latency.

Run: ``.venv/bin/python bench/kernel.py [--runs N] [--actions A]`` (starts its own nats-server
and ``cortex kernel`` processes).

Workload: runs whose single turn declares ``A`` tool actions, the actions complete, and the
turn ends with a final response: per run ``2A + 2`` inputs (run.requested, action.declared,
action.completed, turn.completed) and ``2A + 3`` decided events plus ``A + 1`` work items.

- Throughput: ``cortex kernel`` processes (one, then two) on a fresh server; the benchmark
  plays ``--in-flight`` runs at a time (per kernel) like the pools would: it publishes each
  input once the decision it depends on is out (watched on a core subscription), so every
  input is decided on its own, as in steady state. Inputs per second = inputs / wall time;
  CPU seconds of the kernels and of nats-server per input are read from /proc.
- Latency: one idle kernel; inputs of fresh runs are published one at a time; latency is the
  time from calling publish to seeing the decision's first and last event on a live ordered
  consumer (p50, p99).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.support

from cortex.bus import subjects  # noqa: E402
from cortex.bus.client import Bus  # noqa: E402
from cortex.bus.events import (  # noqa: E402
    ActionCompleted,
    ActionCompletedData,
    ActionDeclared,
    ActionDeclaredData,
    Event,
    RunRequested,
    RunRequestedData,
    TurnCompleted,
    TurnCompletedData,
)
from cortex.kernel.decider import RunState, step  # noqa: E402
from cortex.specs import AgentSpec, ToolSpec  # noqa: E402
from tests.support.nats import NatsProcess  # noqa: E402

AGENT = AgentSpec(
    name="bench", provider="scripted", model="m", system_prompt="Bench.",
    tools=(ToolSpec(name="echo", params_schema={"type": "object"}),),
)


def run_inputs(run_id: str, actions: int) -> list[Event]:
    """The inputs of one run, in the order the pools would publish them."""
    at = datetime.now(timezone.utc)

    def meta(n: str) -> dict[str, object]:
        return {"id": f"{run_id}-{n}", "run_id": run_id, "time": at, "correlation_id": run_id}

    ids = [f"a{i}" for i in range(actions)]
    text = "".join(f'<action type="tool" name="echo" id="{a}">{{}}</action>' for a in ids)
    return [
        RunRequested(**meta("req"), data=RunRequestedData(agent=AGENT, message="go")),
        *(
            ActionDeclared(**meta(f"d{a}"), data=ActionDeclaredData(turn_id="t1", action_id=a, type="tool", name="echo", params={}))
            for a in ids
        ),
        *(ActionCompleted(**meta(f"c{a}"), data=ActionCompletedData(action_id=a, result={"ok": a})) for a in ids),
        TurnCompleted(
            **meta("tc"),
            data=TurnCompletedData(turn_id="t1", stop_reason="end", output=text + '<response final="true">ok</response>'),
        ),
    ]


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (0..100) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def start_kernel(url: str, log: Path, concurrency: int) -> subprocess.Popen[str]:
    """``cortex kernel`` as a process; returns once it consumes."""
    env = {**os.environ, "CORTEX_NATS_URL": url, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cortex.cli.main", "kernel", "--concurrency", str(concurrency)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True,
    )
    assert proc.stdout is not None and "deciding" in proc.stdout.readline(), log.read_text()
    return proc


def stop_kernel(proc: subprocess.Popen[str]) -> None:
    """SIGTERM and wait."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class DecisionWatch:
    """Counts decided events per run and type on a core subscription (no decoding).

    A core subscription also sees publishes JetStream refused (conflicts, duplicates), so a
    wait may end a little early: good enough to pace the load, never used to check results.
    """

    TYPES = ("turn.requested", "timer.set", "run.completed")

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.waiters: dict[tuple[str, str], list[tuple[int, asyncio.Future[None]]]] = {}

    async def start(self, bus: Bus) -> None:
        """Subscribe to the decided events the load generator waits for."""
        for event_type in self.TYPES:
            await bus.nc.subscribe(f"cortex.evt.*.{event_type}", cb=self._seen)

    async def _seen(self, msg: object) -> None:
        _, _, run_id, event_type = msg.subject.split(".", 3)  # type: ignore[attr-defined]
        key = (run_id, event_type)
        count = self.counts[key] = self.counts.get(key, 0) + 1
        for n, waiter in self.waiters.pop(key, []):
            if count >= n and not waiter.done():
                waiter.set_result(None)
            elif count < n:
                self.waiters.setdefault(key, []).append((n, waiter))

    async def wait(self, run_id: str, event_type: str, n: int) -> None:
        """Until ``n`` events of ``event_type`` were decided for the run."""
        key = (run_id, event_type)
        if self.counts.get(key, 0) >= n:
            return
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(key, []).append((n, waiter))
        await waiter


async def drive(bus: Bus, watch: DecisionWatch, run_id: str, actions: int) -> int:
    """Play one run like the pools would: each input once the decision it depends on is out."""
    declared = 0
    inputs = run_inputs(run_id, actions)
    for event in inputs:
        await bus.publish_event(event)
        if event.type == "run.requested":
            await watch.wait(run_id, "turn.requested", 1)
        elif event.type == "action.declared":
            declared += 1
            await watch.wait(run_id, "timer.set", declared)
        elif event.type == "turn.completed":
            await watch.wait(run_id, "run.completed", 1)
    return len(inputs)


async def throughput(kernels: int, runs: int, in_flight: int, actions: int, concurrency: int,
                     tmp: Path) -> dict[str, float]:
    """Inputs decided per second by ``kernels`` kernels, ``in_flight`` runs played at once."""
    server = NatsProcess(store_dir=tmp / f"js{kernels}", name=f"k{kernels}").start()
    bus = await Bus.connect(server.url)
    procs: list[subprocess.Popen[str]] = []
    try:
        await bus.provision()
        watch = DecisionWatch()
        await watch.start(bus)
        procs = [start_kernel(server.url, tmp / f"kernel{kernels}-{i}.log", concurrency) for i in range(kernels)]
        slots = asyncio.Semaphore(in_flight)

        async def one(r: int) -> int:
            async with slots:
                return await drive(bus, watch, f"b{kernels}x{r}", actions)

        cpu_before = [cpu_seconds(p.pid) for p in procs] + [cpu_seconds(server.proc.pid)]  # type: ignore[union-attr]
        start = time.perf_counter()
        inputs = sum(await asyncio.wait_for(asyncio.gather(*(one(r) for r in range(runs))), 600))
        seconds = time.perf_counter() - start
        cpu_after = [cpu_seconds(p.pid) for p in procs] + [cpu_seconds(server.proc.pid)]  # type: ignore[union-attr]
    finally:
        for proc in procs:
            stop_kernel(proc)
        await bus.close()
        server.kill()
    counters = [kernel_counters(tmp / f"kernel{kernels}-{i}.log") for i in range(kernels)]
    used = [after - before for before, after in zip(cpu_before, cpu_after)]
    return {
        "inputs": inputs, "seconds": seconds, "per_second": inputs / seconds,
        "kernel_cpu_us": sum(used[:-1]) / inputs * 1e6, "server_cpu_us": used[-1] / inputs * 1e6,
        "conflicts": sum(c["conflicts"] for c in counters), "reads": sum(c["reads"] - c["rebuilds"] for c in counters),
    }


def kernel_counters(log: Path) -> dict[str, int]:
    """The counters a kernel printed when it stopped."""
    line = next(line for line in log.read_text().splitlines() if "stopped" in line)
    return json.loads(line.split("stopped ", 1)[1])


async def latency(samples: int, actions: int, tmp: Path) -> dict[str, list[float]]:
    """Per decision, in ms, one input at a time, one kernel: from calling publish to seeing its
    first and last event (``seen_first``, ``seen_last``), and from the input's storage to the
    storage of its first and last event by the server's own clock (``stored_first``,
    ``stored_last``: what the issue calls "event published to decision published")."""
    server = NatsProcess(store_dir=tmp / "jslat", name="lat").start()
    bus = await Bus.connect(server.url)
    proc = None
    first_ms: list[float] = []
    last_ms: list[float] = []
    stored: list[tuple[int, int, int]] = []  # (input seq, first output seq, last output seq)
    try:
        await bus.provision()
        proc = start_kernel(server.url, tmp / "kernel-lat.log", 64)
        seen: dict[str, float] = {}
        seqs: dict[str, int] = {}
        arrived = asyncio.Event()

        async def follow() -> None:
            async for event, seq in bus.watch(subjects.EVENTS_WILDCARD):
                seen[event.id] = time.perf_counter()
                seqs[event.id] = seq
                arrived.set()

        watcher = asyncio.create_task(follow())
        await asyncio.sleep(0.5)  # let the watch subscribe before the first input
        r = 0
        while len(last_ms) < samples:
            state = RunState()
            for event in run_inputs(f"lat{r}", actions):
                decision = step(state, event)
                state = decision.state
                outs = [o.id for o in decision.outputs if isinstance(o, Event)]
                start = time.perf_counter()
                input_seq = await bus.publish_event(event)
                if not outs:
                    continue
                while outs[-1] not in seen:
                    arrived.clear()
                    await asyncio.wait_for(arrived.wait(), 10)
                first_ms.append((seen[outs[0]] - start) * 1000)
                last_ms.append((seen[outs[-1]] - start) * 1000)
                stored.append((input_seq, seqs[outs[0]], seqs[outs[-1]]))
            r += 1
        watcher.cancel()
        times = await stored_times(bus, {seq for triple in stored for seq in triple})
    finally:
        if proc is not None:
            stop_kernel(proc)
        await bus.close()
        server.kill()
    return {
        "seen_first": first_ms,
        "seen_last": last_ms,
        "stored_first": [(times[f] - times[i]) * 1000 for i, f, _ in stored],
        "stored_last": [(times[last] - times[i]) * 1000 for i, _, last in stored],
    }


async def stored_times(bus: Bus, seqs: set[int]) -> dict[int, float]:
    """The time (seconds, the server's clock) each message of CORTEX_EVENTS was stored."""
    times = {}
    for seq in seqs:
        msg = await bus.js.get_msg(subjects.EVENTS_STREAM, seq)
        stamp = msg.time if isinstance(msg.time, datetime) else datetime.fromisoformat(str(msg.time))
        times[seq] = stamp.timestamp()
    return times


async def main() -> None:
    """Run the measurements and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000, help="runs per throughput measurement (per kernel)")
    parser.add_argument("--in-flight", type=int, default=200, help="runs played at once (per kernel)")
    parser.add_argument("--actions", type=int, default=4, help="actions per run")
    parser.add_argument("--samples", type=int, default=1_000, help="latency samples")
    parser.add_argument("--concurrency", type=int, default=128, help="kernel --concurrency")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = await throughput(1, args.runs, args.in_flight, args.actions, args.concurrency, Path(tmp))
        two = await throughput(2, 2 * args.runs, 2 * args.in_flight, args.actions, args.concurrency, Path(tmp))
        lat = await latency(args.samples, args.actions, Path(tmp))
    print(f"cpus {os.cpu_count()}, runs of {2 * args.actions + 2} inputs, {args.in_flight} runs in flight per kernel, "
          f"kernel --concurrency {args.concurrency}")
    for name, m in (("one kernel ", one), ("two kernels", two)):
        print(f"{name}  {m['per_second']:>7,.0f} inputs/s  ({m['inputs']:,} inputs in {m['seconds']:.2f} s; "
              f"CPU per input: kernels {m['kernel_cpu_us']:.0f} us, nats-server {m['server_cpu_us']:.0f} us; "
              f"{m['conflicts']} conflicts, {m['reads']} catch-up reads)")
    print(f"per kernel   {one['per_second']:>7,.0f} / {two['per_second'] / 2:,.0f} inputs/s   (goal >= 5,000);  "
          f"two kernels = {two['per_second'] / one['per_second']:.2f} x one   (goal >= 1.7 x)")
    print(f"decision latency, input stored -> its decision's last event stored (server clock): "
          f"p50 {statistics.median(lat['stored_last']):.3f} ms  p99 {pct(lat['stored_last'], 99):.3f} ms   "
          f"(goal p50 <= 1 ms)")
    print(f"                  input stored -> first event stored: p50 {statistics.median(lat['stored_first']):.3f} ms  "
          f"p99 {pct(lat['stored_first'], 99):.3f} ms")
    print(f"                  publish called -> last event seen by a watcher: p50 {statistics.median(lat['seen_last']):.3f} ms  "
          f"p99 {pct(lat['seen_last'], 99):.3f} ms; first event: p50 {statistics.median(lat['seen_first']):.3f} ms  "
          f"({len(lat['seen_last'])} samples)")


if __name__ == "__main__":
    asyncio.run(main())
