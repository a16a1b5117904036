"""How `cortex run` draws a run with rich: the live tree and the closing summary (from a ``RunView``)."""

from __future__ import annotations

from datetime import datetime

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text
from rich.tree import Tree

from cortex.bus.events import Usage
from cortex.cli.run_view import ActionView, RunView, TurnView

STATE_STYLES = {
    "declared": ("·", "dim"), "waiting": ("…", "yellow"), "throttled": ("…", "yellow"),
    "scheduled": ("→", "cyan"), "running": ("⟳", "blue"), "retrying": ("↻", "magenta"),
    "timed out": ("⏱", "red"), "done": ("✓", "green"), "failed": ("✗", "red"), "cancelled": ("⊘", "dim red"),
}
RUN_STYLES = {"completed": "green", "failed": "red", "cancelled": "yellow"}


def _tail(text: str, lines: int = 6) -> str:
    parts = text.strip().splitlines()
    return "\n".join((["…"] if len(parts) > lines else []) + parts[-lines:])


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def action_line(action: ActionView, now: datetime) -> Text:
    """``✓ wiki  tool web.fetch  done  312 ms``."""
    icon, style = STATE_STYLES.get(action.state, ("?", ""))
    line = Text()
    line.append(f"{icon} ", style=style)
    line.append(action.action_id, style="bold")
    line.append(f"  {action.type} {action.name}", style="dim")
    if action.mode != "async":
        line.append(f" ({action.mode})", style="dim")
    line.append(f"  {action.label}", style=style)
    duration = _seconds(action.duration_s(now))
    if duration:
        line.append(f"  {duration}", style="dim")
    return line


def _turn_node(tree: Tree, view: RunView, turn: TurnView, now: datetime) -> None:
    node = tree.add(Text(f"turn {turn.iteration} ({turn.turn_id}) {turn.state}", style="bold"))
    if turn.thought.strip():
        node.add(Text(_tail(turn.thought), style="italic dim"))
    for action in view.actions:
        if action.turn_id == turn.turn_id:
            node.add(action_line(action, now))
    if turn.response.strip():
        node.add(Text(_tail(turn.response, 10)))


def render(view: RunView, now: datetime) -> RenderableType:
    """The live picture of a run at ``now``."""
    header = Text()
    header.append(f"run {view.run_id}", style="bold")
    header.append(f" · agent {view.agent} · ")
    header.append(view.status, style=RUN_STYLES.get(view.status, "cyan"))
    header.append(f" · {_seconds(view.duration_s(now)) or '0 ms'}", style="dim")
    tree = Tree(header)
    for turn in view.turns.values():
        _turn_node(tree, view, turn, now)
    for note in view.notes[-5:]:
        tree.add(Text(note, style="yellow"))
    return tree


def total_usage(view: RunView) -> Usage:
    """The run's usage, or the sum of its turns' usage when it did not complete."""
    if view.usage is not None:
        return view.usage
    turns = [t.usage for t in view.turns.values() if t.usage]
    return Usage(sum(u.prompt_tokens for u in turns), sum(u.completion_tokens for u in turns))


def summary(view: RunView) -> RenderableType:
    """The answer (or the error) and the usage, printed once the run ended."""
    usage = total_usage(view)
    line = Text(
        f"usage: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens · "
        f"{_count(len(view.turns), 'turn')} · {_count(len(view.actions), 'action')} · "
        f"{_seconds(view.duration_s()) or '-'}",
        style="dim",
    )
    if view.status == "completed":
        return Group(Panel(view.answer or "(empty)", title="answer", border_style="green"), line)
    status = view.status if view.status != "requested" else "not finished"
    return Group(Text(f"run {status}: {view.error}".rstrip(": "), style=RUN_STYLES.get(view.status, "red")), line)
