"""The kernel's bounded cache of run states (least recently used runs are dropped first)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from cortex.kernel.decider import RunState


@dataclass(frozen=True)
class RunView:
    """A run's state folded in decision order up to ``last_seq``: everything the run stored up to
    that stream sequence is in it, and every input in it has its outputs in the log.

    ``epoch`` is the delivery epoch (``service.Trust``) the view was read or kept current in:
    while the kernel's deliveries stay in that epoch, no input of the run can have passed it by.
    """

    state: RunState
    last_seq: int
    epoch: int | None = None


class RunCache:
    """Run id -> RunView, at most ``capacity`` runs; a miss means: rebuild from the log."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = max(1, capacity)
        self._views: OrderedDict[str, RunView] = OrderedDict()

    def __len__(self) -> int:
        return len(self._views)

    def get(self, run_id: str) -> RunView | None:
        """The cached view of a run (marked as recently used), or None."""
        view = self._views.get(run_id)
        if view is not None:
            self._views.move_to_end(run_id)
        return view

    def peek(self, run_id: str) -> RunView | None:
        """The cached view of a run without marking it used."""
        return self._views.get(run_id)

    def put(self, run_id: str, view: RunView) -> None:
        """Store a run's view, dropping the least recently used runs beyond capacity."""
        self._views[run_id] = view
        self._views.move_to_end(run_id)
        while len(self._views) > self.capacity:
            self._views.popitem(last=False)

    def drop(self, run_id: str) -> None:
        """Forget a run (the next input rebuilds it from the log)."""
        self._views.pop(run_id, None)
