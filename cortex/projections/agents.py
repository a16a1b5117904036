"""The agents read model: each applied agent's definition summary, its active and total runs, its last run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from cortex.bus.events import Event, RunRequested
from cortex.projections.runs import RunView

RUN_LIFECYCLE: frozenset[str] = frozenset(
    {"run.requested", "run.started", "message.received", "run.completed", "run.failed", "run.cancelled"}
)
"""The run events that can change an agent's counters."""


class AgentView(msgspec.Struct, frozen=True, kw_only=True):
    """One agent (key: its name in ``cortex_agents``): definition and run counters."""

    name: str
    defined: bool = False
    description: str = ""
    provider: str = ""
    model: str = ""
    tools: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    workflows: tuple[str, ...] = ()
    context_feeds: tuple[str, ...] = ()
    revision: int = 0
    source: str = ""
    total_runs: int = 0
    active_runs: tuple[str, ...] = ()
    last_run_id: str | None = None
    last_run_at: datetime | None = None
    last_run_status: str | None = None
    seq: int = 0


def define_agent(view: AgentView | None, name: str, spec: dict[str, Any], revision: int) -> AgentView:
    """Set the definition summary from an applied agent (the JSON ``cortex apply`` stored)."""
    base = view or AgentView(name=name)
    return msgspec.structs.replace(
        base,
        defined=True,
        description=str(spec.get("description", "")),
        provider=str(spec.get("provider", "")),
        model=str(spec.get("model", "")),
        tools=tuple(str(tool.get("name", "")) for tool in spec.get("tools", ()) if isinstance(tool, dict)),
        agents=tuple(spec.get("agents", ())),
        workflows=tuple(spec.get("workflows", ())),
        context_feeds=tuple(str(f.get("name", "")) for f in spec.get("context_feeds", ()) if isinstance(f, dict)),
        revision=revision,
        source=str(spec.get("source", "")),
    )


def fold_agent_run(view: AgentView | None, event: Event, run: RunView, seq: int) -> AgentView | None:
    """Count a run event of ``run`` (already folded) into its agent's view; repeats change nothing.

    A run is active while its status is requested or running; the membership follows the run's
    current status, so applying an event twice, or after a crash between writes, stays correct.
    """
    if not run.agent or event.type not in RUN_LIFECYCLE or (view is not None and seq <= view.seq):
        return view
    base = view or AgentView(name=run.agent)
    active = [run_id for run_id in base.active_runs if run_id != run.run_id or run.active]
    if run.active and run.run_id not in active:
        active.append(run.run_id)
    changes: dict[str, Any] = {"active_runs": tuple(active), "seq": seq}
    if isinstance(event, RunRequested):
        changes.update(total_runs=base.total_runs + 1, last_run_id=run.run_id, last_run_at=event.time)
    if run.run_id == changes.get("last_run_id", base.last_run_id):
        changes["last_run_status"] = run.status
    return msgspec.structs.replace(base, **changes)
