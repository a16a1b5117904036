"""LLM pool overhead per streamed token: provider -> parser -> batched events on JetStream.

Run: ``.venv/bin/python bench/llm_pool.py [--tokens 20000] [--repeat 3]`` (starts its own
nats-server on a free port). A scripted model with no delay streams realistic protocol output
(thoughts, async actions, responses) one token per delta; the figure is the wall time of a whole
``TurnRunner.run()`` (history read, watcher, parsing, batching, every publish awaited, the final
``turn.completed``) minus the time to drain the same provider stream alone, per token, and the
same for the worker's CPU time (the nats-server's own work is not in it). Goal: at most 20 µs
per token (wall). Best of ``--repeat`` runs; ``calibration`` (ms for ``sum(range(10**6))``)
tells how fast the machine was.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support

from cortex.adapters.llm.base import CompletionRequest  # noqa: E402
from cortex.adapters.llm.scripted import ScriptedProvider, count_tokens  # noqa: E402
from cortex.bus.client import Bus  # noqa: E402
from cortex.bus.events import ChatMessage, TurnRequestedData  # noqa: E402
from cortex.bus.work import TurnWork  # noqa: E402
from cortex.workers.llm_pool import LlmPool  # noqa: E402
from cortex.workers.turn_runner import TurnSettings  # noqa: E402
from tests.support.nats import NatsProcess  # noqa: E402

_WORDS = (
    "the source says that results agree with earlier work on sparse attention and we should "
    "compare them carefully before answering next step is to fetch more data"
).split()
MESSAGES = (ChatMessage("user", "benchmark"),)


def transcript(tokens: int, action_every: int, seed: int = 7) -> str:
    """Protocol output of about ``tokens`` tokens: segments of ~``action_every`` tokens (a thought,
    an async action, an interim response), or text-only segments of ~100 tokens when 0."""
    rng = random.Random(seed)
    size = action_every or 100
    parts: list[str] = []
    total = n = 0
    while total < tokens:
        thought = " ".join(rng.choice(_WORDS) for _ in range(size // 2))
        response = " ".join(rng.choice(_WORDS) for _ in range(size // 3))
        segment = f'<thought>{thought}</thought><response final="false">{response}</response>'
        if action_every:
            n += 1
            segment += (
                f'<action type="tool" name="web.fetch" id="x{n}">'
                f'{{"url": "https://example.org/{n}", "limit": {n % 50}}}</action>'
            )
        parts.append(segment)
        total += count_tokens(segment)
    return "".join(parts)


def calibration_ms() -> float:
    """Milliseconds for ``sum(range(10**6))`` (how fast this machine is right now)."""
    start = time.perf_counter()
    sum(range(10**6))
    return (time.perf_counter() - start) * 1000


async def provider_only(text: str) -> tuple[float, float]:
    """Wall and CPU seconds to drain the scripted stream alone (the baseline)."""
    provider = ScriptedProvider([{"text": text}])
    request = CompletionRequest(model="", messages=MESSAGES, max_tokens=10**9)
    start, cpu = time.perf_counter(), time.process_time()
    async for _ in provider.stream(request):
        pass
    return time.perf_counter() - start, time.process_time() - cpu


async def through_pool(bus: Bus, pool: LlmPool, text: str) -> tuple[float, float, int]:
    """Wall and CPU seconds for one turn through the runner, and the events it published."""
    run_id = "bench" + uuid.uuid4().hex[:10]
    request = TurnRequestedData(
        turn_id="t1", iteration=1, provider="scripted", model="", messages=MESSAGES,
        max_tokens=10**9, provider_options={"script": [{"text": text}]},
    )  # fmt: skip
    work = TurnWork(run_id=run_id, causation_id=f"{run_id}:req", request=request)
    start, cpu = time.perf_counter(), time.process_time()
    stop_reason = await pool.run_turn(work)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert stop_reason == "end_turn", stop_reason
    return elapsed, cpu, len((await bus.read_run(run_id)).events)


async def measure(bus: Bus, tokens: int, action_every: int, chunk_chars: int, repeat: int) -> str:
    """One line of results for one workload."""
    text = transcript(tokens, action_every)
    n = count_tokens(text)
    pool = LlmPool(bus, TurnSettings(chunk_chars=chunk_chars, worker="bench"))
    await through_pool(bus, pool, text[:2000])  # warm-up: provider cache, consumers, JIT-free paths
    wall_us = cpu_us = float("inf")
    events = 0
    for _ in range(repeat):
        base_wall, base_cpu = await provider_only(text)
        wall, cpu, events = await through_pool(bus, pool, text)
        wall_us = min(wall_us, (wall - base_wall) / n * 1e6)
        cpu_us = min(cpu_us, (cpu - base_cpu) / n * 1e6)
    await pool.aclose()
    actions = f"1 action/{action_every} tok" if action_every else "no actions"
    return (
        f"{n:>7,} tokens  {actions:<18} chunk_chars={chunk_chars:<5} {events:>6,} events  "
        f"wall {wall_us:6.2f} µs/token  cpu {cpu_us:6.2f} µs/token   (goal: wall <= 20)"
    )


async def main() -> None:
    """Start a server, run the workloads, print one line each."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=20_000, help="tokens per turn")
    parser.add_argument("--repeat", type=int, default=3, help="runs per workload (best is kept)")
    args = parser.parse_args()
    print(f"calibration {calibration_ms():.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsProcess(store_dir=Path(tmp) / "js").start()
        bus = await Bus.connect(server.url)
        try:
            await bus.provision()
            for action_every, chunk_chars in ((0, 256), (100, 256), (100, 64), (30, 256), (100, 1024)):
                print(await measure(bus, args.tokens, action_every, chunk_chars, args.repeat))
        finally:
            await bus.close()
            server.kill()


if __name__ == "__main__":
    asyncio.run(main())
