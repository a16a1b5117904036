"""The kernel's pure decider: ``step(state, event) -> Decision(state, outputs)``, no I/O.

Inputs are facts (``DECISION_INPUTS``); outputs are events (folded back into the state) and
commands (``DispatchWork``, ``CancelWork``) for the service loop. Ids and times of outputs
derive from the triggering event, so replaying a log reproduces every decision.
See docs/kernel.md for the rules and the reason codes.
"""

from cortex.kernel.decider.commands import AnyCommand, CancelWork, Command, DispatchWork
from cortex.kernel.decider.decide import DECISION_INPUTS, Decision, decide, step
from cortex.kernel.decider.evolve import FOLDED, evolve, replay
from cortex.kernel.decider.session import Output
from cortex.kernel.decider.state import ActionState, RunState, TurnState

__all__ = [
    "DECISION_INPUTS",
    "FOLDED",
    "ActionState",
    "AnyCommand",
    "CancelWork",
    "Command",
    "Decision",
    "DispatchWork",
    "Output",
    "RunState",
    "TurnState",
    "decide",
    "evolve",
    "replay",
    "step",
]
