"""Tool pool benchmark: round trip of a no-op python tool, work item published -> action.completed seen.

Run: ``.venv/bin/python bench/tool_pool.py [--n N] [--uvloop]``. Starts its own nats-server on a free port
and one ``cortex worker tool`` process serving this file's tools (plugin ``bench``: ``noop`` is
``async def``, ``noop_sync`` a plain ``def`` run in a worker thread). Work items are sent one at
a time; the clock runs from before ``publish_work`` until ``action.completed`` arrives on a
plain subscription. For reference it also times the floor: one acknowledged JetStream publish.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.support

from cortex.adapters.tools import tool  # noqa: E402
from cortex.bus import subjects  # noqa: E402
from cortex.bus.client import Bus  # noqa: E402
from cortex.bus.events import decode  # noqa: E402
from cortex.bus.work import ActionWork  # noqa: E402
from bench.support import wait_registered  # noqa: E402
from tests.support.nats import NatsProcess  # noqa: E402

MANIFEST = """name: bench
version: "1.0"
kind: system
runtime: python
module: bench.tool_pool
"""


@tool
async def noop() -> dict:
    """Do nothing (async)."""
    return {}


@tool
def noop_sync() -> dict:
    """Do nothing (in a worker thread)."""
    return {}


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (0..100) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def round_trips(bus: Bus, name: str, n: int, warmup: int) -> list[float]:
    """Milliseconds from publishing each work item to seeing its ``action.completed``."""
    run_id = "bench-" + uuid.uuid4().hex[:8]
    done: dict[str, asyncio.Future[None]] = {}

    async def on_completed(msg) -> None:  # noqa: ANN001 - nats Msg
        future = done.get(decode(msg.data).data.action_id)
        if future is not None and not future.done():
            future.set_result(None)

    sub = await bus.nc.subscribe(subjects.run_event(run_id, "action.completed"), cb=on_completed)
    await bus.nc.flush()
    samples = []
    try:
        for i in range(warmup + n):
            action_id = f"a{i}"
            completed = done[action_id] = asyncio.get_running_loop().create_future()
            item = ActionWork(run_id=run_id, causation_id=f"{run_id}:s{i}", action_id=action_id, type="tool", name=name)
            start = time.perf_counter()
            await bus.publish_work("tool", item)
            await asyncio.wait_for(completed, 10)
            del done[action_id]
            if i >= warmup:
                samples.append((time.perf_counter() - start) * 1000)
    finally:
        await sub.unsubscribe()
    return samples


async def publish_floor(bus: Bus, n: int) -> list[float]:
    """Milliseconds per acknowledged publish (no consumer involved): the floor of any round trip."""
    samples = []
    for i in range(n):
        start = time.perf_counter()
        await bus.js.publish(f"{subjects.PREFIX}.evt.floor.bus.ping", b"{}")
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process used so far (Linux /proc), or 0.0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(label: str, samples: list[float]) -> None:
    """Print p50/p99/mean of a series."""
    mean = sum(samples) / len(samples)
    print(f"{label:<34} n={len(samples):<6} p50={pct(samples, 50):.3f} ms  p99={pct(samples, 99):.3f} ms  "
          f"mean={mean:.3f} ms")


UVLOOP_LAUNCHER = "import sys, uvloop; uvloop.install(); from cortex.cli.main import main; sys.exit(main(sys.argv[1:]))"
"""``cortex`` with uvloop's event loop (the CLI itself uses asyncio's): for ``--uvloop``."""


async def main(n: int, warmup: int, concurrency: int, uvloop: bool = False) -> None:
    """Start a server and a worker, measure, stop both."""
    with tempfile.TemporaryDirectory(prefix="cortex-bench-tool-") as tmp:
        base = Path(tmp)
        (base / "bench.yaml").write_text(MANIFEST)
        server = NatsProcess(store_dir=base / "js").start()
        env = {**os.environ, "CORTEX_NATS_URL": server.url, "PYTHONPATH": str(REPO)}
        argv = ["worker", "tool", "--no-builtins", "--plugins", str(base / "bench.yaml"),
                "--concurrency", str(concurrency)]
        launch = ["-c", UVLOOP_LAUNCHER, *argv] if uvloop else ["-m", "cortex.cli.main", *argv]
        worker = subprocess.Popen([sys.executable, *launch], cwd=REPO, env=env, start_new_session=True)
        try:
            bus = await Bus.connect(server.url, name="bench")
            await bus.provision()
            await wait_registered(bus, "bench")
            report("acked publish (floor)", await publish_floor(bus, n))
            for name, label in (("bench.noop", "async"), ("bench.noop_sync", "thread")):
                assert server.proc is not None
                before = cpu_seconds(worker.pid), cpu_seconds(server.proc.pid)
                report(f"round trip {name} ({label})", await round_trips(bus, name, n, warmup))
                worker_cpu = (cpu_seconds(worker.pid) - before[0]) * 1000 / (n + warmup)
                server_cpu = (cpu_seconds(server.proc.pid) - before[1]) * 1000 / (n + warmup)
                print(f"{'  CPU per action':<34} worker {worker_cpu:.2f} ms, nats-server {server_cpu:.2f} ms")
            await bus.close()
        finally:
            worker.terminate()
            worker.wait(30)
            server.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="measured round trips per tool (default 2000)")
    parser.add_argument("--warmup", type=int, default=100, help="round trips not measured (default 100)")
    parser.add_argument("--concurrency", type=int, default=16, help="the worker's --concurrency (default 16)")
    parser.add_argument("--uvloop", action="store_true", help="run the worker on uvloop (needs uvloop installed)")
    ns = parser.parse_args()
    asyncio.run(main(ns.n, ns.warmup, ns.concurrency, ns.uvloop))
