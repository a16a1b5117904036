"""The recorded run behind the replay test: a multi-wave DAG with retries, timeouts, throttling,
an interim user message, cancellation, a denial and fire-and-forget work.

``record()`` drives the decider through it and returns the log as JSON lines
(``{"dir": "in"|"out", "item": ...}``). Only ``python -m tests.kernel.make_golden`` writes
the golden file; the tests only read it.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from cortex.bus.events import AnyEvent, Event
from cortex.kernel.decider import Output
from cortex.specs import AgentSpec, Limits, RetryPolicy
from tests.kernel.helpers import Run, tool

GOLDEN = Path(__file__).with_name("golden") / "replay_v1.jsonl"

_URL = {"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]}
_TEXT = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
_EXPR = {"type": "object", "properties": {"expr": {"type": "string"}}, "required": ["expr"]}

AGENT = AgentSpec(
    name="researcher",
    provider="llama_local",
    model="gemma-3-270m",
    system_prompt="You research questions and answer briefly.",
    tools=(
        tool("web.fetch", _URL, timeout_s=10, retry=RetryPolicy(max_attempts=3, backoff_s=0.5)),
        tool("text.extract", _TEXT, pool="tool", lane="nlp"),
        tool("calc", _EXPR),
        tool("notify", {"type": "object"}, idempotent=False),
    ),
    limits=Limits(max_parallel_actions=2, max_iterations=4, action_timeout_s=30),
)


def line(direction: str, item: Event | Output) -> bytes:
    """One JSON line of the golden log."""
    return msgspec.json.encode({"dir": direction, "item": item})


class Recorder(Run):
    """A ``Run`` that also keeps every input and output as golden lines."""

    def __init__(self) -> None:
        super().__init__(AGENT, run_id="golden")
        self.lines: list[bytes] = []

    def feed(self, event: Event) -> list[Output]:
        """Step the event as the kernel would see it (after a JSON round trip) and record."""
        event = msgspec.json.decode(msgspec.json.encode(event), type=AnyEvent)
        outputs = super().feed(event)
        self.lines.append(line("in", event))
        self.lines.extend(line("out", out) for out in outputs)
        return outputs


def record() -> list[bytes]:
    """Drive the scenario through the decider; return the log lines."""
    run = Recorder()
    run.start("Compare what Wikipedia and arXiv say about NATS JetStream.")
    # wave 1: two fetches run, the third is throttled; extract waits on both fetches
    run.declare("wiki", "web.fetch", {"url": "https://en.wikipedia.org/wiki/NATS"})
    run.declare("arxiv", "web.fetch", {"url": "https://arxiv.org/a/nats"})
    run.declare("blog", "web.fetch", {"url": "https://nats.io/blog"})
    run.declare(
        "facts", "text.extract", {"text": "$wiki.body\n$arxiv.body"}, depends_on=("wiki", "arxiv")
    )
    run.declare("topic", "set", {"name": "topic", "value": "JetStream"}, type="internal")
    run.declare("ping", "notify", {"msg": "started $vars.topic"}, mode="fire_and_forget")
    run.end_turn('<response final="false">Fetching sources...</response>', tokens=120)
    run.fail("wiki", retryable=True, code="http_503")  # retried after 0.5 s
    run.complete("arxiv", {"body": "JetStream persists streams."}, latency_ms=840)
    run.fire("wiki", "action_retry")
    run.fire("blog", "action_timeout")  # timed out: retried after a backoff
    run.message("Keep it to two sentences.")
    run.complete("wiki", {"body": "NATS is a messaging system."}, latency_ms=410)
    run.fire("blog", "action_retry")
    run.cancel("action", action_id="blog")
    run.complete("ping", "sent")
    run.complete(
        "facts", {"summary": "JetStream adds persistence to NATS.", "count": 2}, latency_ms=95
    )
    # wave 2: a sync calculation, a denied unknown tool, and the final answer
    run.declare("double", "calc", {"expr": "$facts.count * 2"}, mode="sync")
    run.declare("oops", "web.search", {"q": "nats"})
    run.complete("double", 4)
    run.end_turn('<response final="true">$facts.summary ($double facts)</response>', tokens=60)
    run.complete("double", 5, attempt=1)  # a stale duplicate result: nothing to decide
    return run.lines
