"""The imperative commands the decider returns beside its events."""

from __future__ import annotations

from typing import Literal

import msgspec

from cortex.bus import subjects
from cortex.bus.work import ActionWork, TurnWork


class Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="command"):
    """Base of the decider's commands (tagged ``command`` when encoded)."""


class DispatchWork(Command, kw_only=True, tag="dispatch_work"):
    """Put a work item on ``cortex.work.<pool>[.<lane>]``."""

    pool: str
    lane: str | None = None
    item: TurnWork | ActionWork

    @property
    def subject(self) -> str:
        """The work subject this item goes to."""
        return subjects.work(self.pool, self.lane)


class CancelWork(Command, kw_only=True, tag="cancel_work"):
    """Tell the pool running a turn or an action attempt to stop it."""

    run_id: str
    pool: str
    lane: str | None = None
    target: Literal["turn", "action"]
    target_id: str
    attempt: int = 1
    reason: str = ""


AnyCommand = DispatchWork | CancelWork
