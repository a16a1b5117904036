"""One decision in the making: the working state, the outputs so far and their ids."""

from __future__ import annotations

from typing import Any

from cortex.bus.events import Event
from cortex.kernel.decider.commands import Command
from cortex.kernel.decider.evolve import evolve
from cortex.kernel.decider.ids import IdSource
from cortex.kernel.decider.state import RunState

Output = Event | Command
"""What a decision yields: events (facts, folded into the state) and commands (for pools)."""


class Session:
    """Collects the outputs of one decision, folding each emitted event as it goes."""

    def __init__(self, state: RunState, trigger: Event) -> None:
        self.state = state
        self.trigger = trigger
        self.outputs: list[Output] = []
        self._ids = IdSource(trigger)

    def emit(self, event_type: type[Event], data: Any) -> Event:
        """Emit an event caused by the trigger (same time, correlation and trace) and fold it."""
        trigger = self.trigger
        event = event_type(
            id=self._ids.next(),
            run_id=self.state.run_id,
            time=trigger.time,
            causation_id=trigger.id,
            correlation_id=trigger.correlation_id,
            trace=trigger.trace,
            data=data,
        )
        self.state = evolve(self.state, event)
        self.outputs.append(event)
        return event

    def command(self, command: Command) -> None:
        """Add a command for the service loop to carry out."""
        self.outputs.append(command)
