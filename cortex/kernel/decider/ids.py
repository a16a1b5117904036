"""Deterministic ids for everything the decider emits, derived from the triggering event."""

from __future__ import annotations

from cortex.bus.events import Event


class IdSource:
    """Hands out ``<trigger id>:<n>`` event ids, n counting from 1, for one decision."""

    def __init__(self, trigger: Event) -> None:
        self._trigger_id = trigger.id
        self._n = 0

    def next(self) -> str:
        """The next event id of this decision."""
        self._n += 1
        return f"{self._trigger_id}:{self._n}"


def turn_id(number: int) -> str:
    """Id of the run's ``number``-th turn (1-based)."""
    return f"t{number}"


def timer_id(action_id: str, purpose: str, attempt: int) -> str:
    """Id of an action's timer: one per action, purpose and attempt."""
    return f"{action_id}/{purpose}/{attempt}"
