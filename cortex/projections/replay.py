"""Replay a recorded run through the decider and check that it reproduces the recorded decisions.

A decision is an event the kernel wrote: its id is ``<trigger id>:<n>`` and its causation id is
the trigger. The replay feeds every other decision input to ``step`` in log order, collects the
events it decides, and compares them with the recorded decisions byte for byte (as JSON).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from cortex.bus.events import Event, encode
from cortex.kernel.decider import DECISION_INPUTS, RunState, step

_DECISION_SUFFIX = re.compile(r":\d+$")


def is_decision(event: Event) -> bool:
    """True for an event the kernel decided (id ``<causation id>:<n>``)."""
    cause = event.causation_id
    return bool(cause) and event.id.startswith(f"{cause}:") and bool(_DECISION_SUFFIX.search(event.id))


@dataclass
class ReplayReport:
    """What a replay found: the final state and how the decisions compare."""

    state: RunState
    inputs: int = 0
    recorded: int = 0
    reproduced: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every recorded decision was made again, identically, and nothing else was."""
        return not (self.missing or self.unexpected or self.different)

    def problems(self) -> list[str]:
        """One line per mismatch."""
        return (
            [f"decided again but not in the log: {i}" for i in self.missing]
            + [f"in the log but not decided again: {i}" for i in self.unexpected]
            + [f"decided differently: {i}" for i in self.different]
        )


def replay_run(events: Iterable[Event]) -> ReplayReport:
    """Fold a run's log through ``step`` and compare the decisions (pure: no I/O, no clock)."""
    state = RunState()
    decided: dict[str, bytes] = {}
    recorded: dict[str, bytes] = {}
    inputs = 0
    for event in events:
        if is_decision(event):
            recorded[event.id] = encode(event)
        elif event.type in DECISION_INPUTS:
            inputs += 1
            decision = step(state, event)
            state = decision.state
            for output in decision.outputs:
                if isinstance(output, Event):
                    decided[output.id] = encode(output)
    report = ReplayReport(state=state, inputs=inputs, recorded=len(recorded))
    for event_id, payload in decided.items():
        if event_id not in recorded:
            report.missing.append(event_id)
        elif _same(payload, recorded[event_id]):
            report.reproduced += 1
        else:
            report.different.append(event_id)
    report.unexpected = [event_id for event_id in recorded if event_id not in decided]
    return report


def _same(a: bytes, b: bytes) -> bool:
    """Equal as JSON values (key order aside)."""
    return msgspec.json.decode(a) == msgspec.json.decode(b)
