"""Replay: the golden log, folded through ``step``, reproduces every decision byte for byte.

The golden file is regenerated only by ``python -m tests.kernel.make_golden``; a decider that
used the clock, randomness or unordered iteration would produce different ids, times or order
and fail here.
"""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest

from cortex.bus.events import AnyEvent, Event
from cortex.kernel.decider import RunState, replay, step
from tests.kernel.golden import GOLDEN, line, record

_Line = msgspec.defstruct("Line", [("dir", str), ("item", msgspec.Raw)])


@pytest.fixture(scope="module")
def golden() -> list[bytes]:
    return GOLDEN.read_bytes().splitlines()


def _parse(golden: list[bytes]) -> list[tuple[str, msgspec.Raw]]:
    return [(entry.dir, entry.item) for entry in map(msgspec.json.Decoder(_Line).decode, golden)]


def test_replaying_the_inputs_reproduces_every_decision_exactly(golden):
    state = RunState()
    replayed: list[bytes] = []
    for direction, raw in _parse(golden):
        if direction == "in":
            event = msgspec.json.decode(raw, type=AnyEvent)
            decision = step(state, event)
            state = decision.state
            replayed.append(line("in", event))
            replayed.extend(line("out", out) for out in decision.outputs)
    assert len(replayed) == len(golden)
    for number, (got, want) in enumerate(zip(replayed, golden, strict=True), start=1):
        assert got == want, f"line {number} differs"
    assert state.status == "completed"


def test_folding_the_whole_log_gives_the_state_the_steps_built(golden):
    state = RunState()
    events: list[Event] = []
    for direction, raw in _parse(golden):
        if raw and b'"command"' not in bytes(raw)[:12]:
            events.append(msgspec.json.decode(raw, type=AnyEvent))
        if direction == "in":
            state = step(state, events[-1]).state
    assert replay(events) == state


def test_the_scenario_still_records_the_golden_log(golden):
    assert record() == golden, (
        "the decider changed: review, then run python -m tests.kernel.make_golden"
    )


def test_the_golden_log_covers_the_interesting_decisions(golden):
    seen = Counter(msgspec.json.decode(raw).get("type") for _, raw in _parse(golden))
    for kind in (
        "action.waiting",
        "action.throttled",
        "action.retried",
        "action.timed_out",
        "action.cancelled",
        "action.denied",
        "timer.set",
        "timer.fired",
        "message.received",
        "run.completed",
    ):
        assert seen[kind] >= 1, kind
    assert seen["turn.requested"] == 2
