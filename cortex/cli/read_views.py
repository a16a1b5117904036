"""Rich renderings of the read models (plain dicts from ``ProjectionQueries``): run tables and action trees."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

STATUS_STYLE = {
    "requested": "cyan",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
}
ACTION_ICON = {
    "declared": ("·", "dim"),
    "waiting": ("…", "magenta"),
    "throttled": ("…", "magenta"),
    "scheduled": ("▶", "cyan"),
    "started": ("▶", "cyan"),
    "timed_out": ("⏱", "yellow"),
    "retry_wait": ("↻", "yellow"),
    "denied": ("✗", "red"),
    "completed": ("✓", "green"),
    "failed": ("✗", "red"),
    "cancelled": ("⊘", "yellow"),
    "rejected": ("✗", "dim"),
}


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 string (or None) as a datetime."""
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def short_time(value: Any) -> str:
    """``YYYY-MM-DD HH:MM:SS`` of an RFC 3339 string, or ``-``."""
    moment = parse_time(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def duration(start: Any, end: Any) -> str:
    """A human duration between two RFC 3339 strings (``-`` if either is missing)."""
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None:
        return "-"
    seconds = (b - a).total_seconds()
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.1f}s"


def status_text(status: str) -> str:
    """A run or turn status with its colour."""
    return f"[{STATUS_STYLE.get(status, 'white')}]{escape(status)}[/]"


def clip(text: str, width: int = 100) -> str:
    """One line of at most ``width`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: width - 1] + "…"


def runs_table(runs: list[dict[str, Any]]) -> Table:
    """The runs as a table, newest first."""
    table = Table("run", "agent", "status", "created", "duration", "tokens", "turns", "actions", box=None)
    for run in runs:
        table.add_row(
            escape(run["run_id"]),
            escape(run.get("agent") or "?"),
            status_text(run["status"]),
            short_time(run.get("created_at")),
            duration(run.get("created_at"), run.get("ended_at")),
            str(run.get("usage", {}).get("total_tokens", 0)),
            str(run.get("turns", 0)),
            str(run.get("actions", 0)),
        )
    return table


def action_label(step: dict[str, Any]) -> str:
    """One line for an action: state icon, id, type and name, state, and what it waits on or why it failed."""
    state = step["state"]
    icon, style = ACTION_ICON.get(state, ("?", "white"))
    parts = [f"[{style}]{icon}[/] [bold]{escape(step['action_id'])}[/]", f"{step['type']} {escape(step['name'])}"]
    detail = state
    if state == "waiting" and step.get("waiting_on"):
        detail = "waiting on " + ", ".join(f"${w}" for w in step["waiting_on"])
    if step.get("attempt", 1) > 1:
        detail += f" (attempt {step['attempt']})"
    parts.append(f"[{style}]{escape(detail)}[/]")
    if step.get("ended_at"):
        took = duration(step.get("scheduled_at") or step.get("declared_at"), step["ended_at"])
        ran = f", ran {step['latency_ms']:.0f}ms" if step.get("latency_ms") else ""
        parts.append(f"[dim]{took}{ran}[/]")
    if state in ("failed", "denied", "cancelled", "rejected") and (step.get("error") or step.get("reason")):
        parts.append(f"[{style}]{escape(clip(step.get('error') or step.get('reason', ''), 80))}[/]")
    elif step.get("progress"):
        parts.append(f"[dim]{escape(clip(step['progress'], 60))}[/]")
    return " ".join(parts)


def turn_label(step: dict[str, Any]) -> str:
    """One line for a model turn."""
    usage = step.get("usage") or {}
    label = f"turn [bold]{escape(step['turn_id'])}[/] {status_text(step['status'])}"
    if step.get("ended_at"):
        label += f" [dim]{duration(step.get('started_at') or step.get('requested_at'), step['ended_at'])}[/]"
    if usage.get("total_tokens"):
        label += f" [dim]{usage['prompt_tokens']}+{usage['completion_tokens']} tokens[/]"
    if step.get("stop_reason"):
        label += f" [dim]stop: {escape(step['stop_reason'])}[/]"
    if step.get("error"):
        label += f" [red]{escape(clip(step['error'], 80))}[/]"
    return label


def progression_tree(run_id: str, progression: dict[str, Any] | None, width: int = 100) -> Tree:
    """The run's steps as a tree: user messages, and each turn with its thoughts, actions and responses."""
    root = Tree(f"run [bold]{escape(run_id)}[/]")
    turns: dict[str, Tree] = {}
    for step in (progression or {}).get("steps", []):
        kind = step["kind"]
        parent = turns.get(step.get("turn_id", ""), root)
        if kind == "message":
            root.add(f"[blue]user[/] {escape(clip(step['text'], width))}")
        elif kind == "turn":
            turns[step["turn_id"]] = root.add(turn_label(step))
        elif kind == "text":
            style = "italic dim" if step["channel"] == "thought" else ("bold" if step.get("final") else "")
            name = "response" if step["channel"] == "response" else "thought"
            text = escape(clip(step["text"], width))
            parent.add(f"[{style}]{name}: {text}[/]" if style else f"{name}: {text}")
        elif kind == "action":
            parent.add(action_label(step))
        elif kind == "parse_error":
            parent.add(f"[red]parse error {escape(step['code'])}[/] {escape(clip(step['message'], width))}")
    return root


def run_summary(run: dict[str, Any]) -> Table:
    """Key facts of one run as a two-column table."""
    table = Table(show_header=False, box=None)
    usage = run.get("usage", {})
    rows = [
        ("run", escape(run["run_id"])),
        ("agent", escape(run.get("agent") or "?")),
        ("status", status_text(run["status"])),
        ("created", short_time(run.get("created_at"))),
        ("duration", duration(run.get("created_at"), run.get("ended_at"))),
        ("tokens", f"{usage.get('prompt_tokens', 0)} prompt + {usage.get('completion_tokens', 0)} completion"),
        ("turns / actions", f"{run.get('turns', 0)} / {run.get('actions', 0)}"),
    ]
    if run.get("parent_run_id"):
        rows.append(("parent", f"{escape(run['parent_run_id'])} (action {escape(run.get('parent_action_id') or '?')})"))
    if run.get("error"):
        rows.append(("error", f"[red]{escape(run.get('error_code', ''))}: {escape(run['error'])}[/]"))
    if run.get("response"):
        rows.append(("response", escape(run["response"])))
    for key, value in rows:
        table.add_row(f"[dim]{key}[/]", value)
    return table
