"""A run's log in decision order: each input folded together with the outputs decided for it.

The kernel's outputs for an input ``E`` have ids ``"<E.id>:<n>"``; they may land in the log
after later inputs of the run (a worker published meanwhile) or only partly (a kernel died
mid-way). Folding the log *in decision order* — inputs in log order, each followed by the
outputs ``step`` decides for it — makes every decision a function of the inputs before it,
whatever the interleaving, so every kernel reaches the same state and the same outputs.
Pure: no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cortex.bus.events import Event
from cortex.bus.work import ActionWork, TurnWork
from cortex.kernel.decider import DECISION_INPUTS, DispatchWork, RunState, evolve, step

log = logging.getLogger("cortex.kernel")


def is_decision_output(event: Event) -> bool:
    """True for an event the kernel decided: id ``"<causation id>:<n>"``, n a number."""
    cause = event.causation_id
    if not cause or len(event.id) <= len(cause) + 1 or not event.id.startswith(cause):
        return False
    return event.id[len(cause)] == ":" and event.id[len(cause) + 1 :].isdigit()


@dataclass
class Advance:
    """What folding new events of a run gave: the state, and the decisions still to publish.

    ``inputs`` counts the inputs decided (again), ``decisions`` those whose outputs the log lacks.
    """

    state: RunState
    missing: list[Event] = field(default_factory=list)
    work: list[DispatchWork] = field(default_factory=list)
    inputs: int = 0
    decisions: int = 0
    failed: list[tuple[Event, str]] = field(default_factory=list)

    def live_work(self) -> list[DispatchWork]:
        """The work of the missing decisions that the state still waits for (not yet answered)."""
        return [command for command in self.work if is_live(self.state, command)]


def is_live(state: RunState, command: DispatchWork) -> bool:
    """True if the turn is still generating, or the action attempt is still scheduled."""
    item = command.item
    if isinstance(item, TurnWork):
        turn = state.turns.get(item.request.turn_id)
        return turn is not None and turn.status == "generating"
    if isinstance(item, ActionWork):
        action = state.actions.get(item.action_id)
        return action is not None and action.status == "scheduled" and action.attempt == item.attempt
    return True


def advance(state: RunState, events: Sequence[Event]) -> Advance:
    """Fold a run's new events (in log order) in decision order, deciding every input again.

    ``state`` must be the decision-order fold of everything before ``events``. Outputs of the
    inputs in ``events`` that the log lacks are returned in ``missing`` (in order), with the
    work those decisions dispatch. A decider failure on an input is recorded and the input
    decides nothing (every kernel fails the same way, so they still agree).
    """
    present = {event.id for event in events if is_decision_output(event)}
    result = Advance(state)
    for event in events:
        if event.id in result.state.seen or is_decision_output(event):
            continue  # folded already, or an output: it is folded right after its input
        if event.type not in DECISION_INPUTS:
            result.state = evolve(result.state, event)
            continue
        try:
            decision = step(result.state, event)
        except Exception as exc:  # noqa: BLE001 - one bad input must not stop the run's other inputs
            log.error("run %s: the decider failed on %s %s: %r", event.run_id, event.type, event.id, exc)
            result.failed.append((event, repr(exc)))
            continue
        result.inputs += 1
        new = [out for out in decision.outputs if isinstance(out, Event) and out.id not in present]
        if new:
            result.decisions += 1
            result.missing += new
            result.work += [out for out in decision.outputs if isinstance(out, DispatchWork)]
        result.state = decision.state
    return result


def rebuild(events: Iterable[Event]) -> RunState:
    """A run's state from its whole log, folded in decision order (what every kernel computes)."""
    return advance(RunState(), list(events)).state
