"""Bus benchmark: acked publish throughput, concurrency-checked publish latency, publish-to-consumer latency.

Run: ``.venv/bin/python bench/bus.py [--events N]`` (starts its own nats-server on a free port).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support

from cortex.bus import subjects  # noqa: E402
from cortex.bus.client import Bus  # noqa: E402
from cortex.bus.events import Ping, PingData  # noqa: E402
from tests.support.nats import NatsProcess  # noqa: E402

NOW = datetime.now(timezone.utc)


def ping(run_id: str, n: int) -> Ping:
    """A small event like the ones a run produces."""
    return Ping(id=f"{run_id}:{n}", run_id=run_id, time=NOW, data=PingData(text="x" * 64, seq=n))


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (0..100) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def throughput(bus: Bus, n: int, window: int = 1000) -> float:
    """Acked events per second from one process, pipelining ``window`` publishes at a time."""
    run_id = "tp-" + uuid.uuid4().hex[:8]
    events = [ping(f"{run_id}{i % 50}", i) for i in range(n)]
    start = time.perf_counter()
    for i in range(0, n, window):
        await bus.publish_pipelined(events[i : i + window])
    return n / (time.perf_counter() - start)


async def checked_latency(bus: Bus, n: int) -> list[float]:
    """Milliseconds per publish with the per-run optimistic concurrency check."""
    run_id = "cc-" + uuid.uuid4().hex[:8]
    seq, samples = 0, []
    for i in range(n):
        start = time.perf_counter()
        seq = await bus.publish_event(ping(run_id, i), expected_last_seq=seq)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def consumer_latency(bus: Bus, n: int) -> list[float]:
    """Milliseconds from publish to delivery on a live subscriber of the run."""
    run_id = "pc-" + uuid.uuid4().hex[:8]
    sent: dict[int, float] = {}
    samples: list[float] = []
    done = asyncio.Event()

    async def follow() -> None:
        async for event, _ in bus.watch(subjects.run_events(run_id)):
            samples.append((time.perf_counter() - sent[event.data.seq]) * 1000)
            if len(samples) == n:
                done.set()
                return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.2)  # let the subscription be created before the first publish
    for i in range(n):
        sent[i] = time.perf_counter()
        await bus.publish_event(ping(run_id, i))
    await asyncio.wait_for(done.wait(), 30)
    await task
    return samples


async def main() -> None:
    """Start a server, run the three measurements, print a summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000, help="events for the throughput run")
    parser.add_argument("--samples", type=int, default=2_000, help="samples for each latency run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsProcess(store_dir=Path(tmp) / "js").start()
        bus = await Bus.connect(server.url)
        try:
            await bus.provision()
            await throughput(bus, 2_000)  # warm-up
            rate = await throughput(bus, args.events)
            checked = await checked_latency(bus, args.samples)
            delivered = await consumer_latency(bus, args.samples)
        finally:
            await bus.close()
            server.kill()
    print(f"acked publish throughput      {rate:>10,.0f} events/s   (goal >= 20,000)")
    print(
        f"checked publish latency       p50 {statistics.median(checked):.3f} ms  p99 {pct(checked, 99):.3f} ms"
        "   (goal p50 <= 0.5 ms)"
    )
    print(f"publish-to-consumer latency   p50 {statistics.median(delivered):.3f} ms  p99 {pct(delivered, 99):.3f} ms")


if __name__ == "__main__":
    asyncio.run(main())
