"""Build the next turn's messages from the run's history (pure)."""

from __future__ import annotations

import html
from typing import Any

import msgspec

from cortex.bus.events import ChatMessage
from cortex.errors import DecisionError
from cortex.kernel.decider.state import ActionState, RunState
from cortex.kernel.prompt import render_system_prompt
from cortex.kernel.protocol.markup import CDATA_CLOSE, CDATA_OPEN

CONTINUE = "Continue."
"""The user message of a turn that has nothing else to say (no results, notes or messages)."""


def as_text(value: Any) -> str:
    """A result as text: strings as they are, anything else as compact JSON."""
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


def action_result(action_id: str, status: str, latency_ms: float, body: str) -> str:
    """One ``<action_result>`` block, the body in CDATA (``]]>`` inside it split safely)."""
    cdata = CDATA_OPEN + body.replace(CDATA_CLOSE, f"]]{CDATA_CLOSE}{CDATA_OPEN}>") + CDATA_CLOSE
    attributes = f'id="{html.escape(action_id)}" status="{status}" latency_ms="{round(latency_ms)}"'
    return f"<action_result {attributes}>{cdata}</action_result>"


def result_block(action: ActionState, limit: int) -> str:
    """The block of a finished action (failed or cancelled: status="error"), cut at ``limit``."""
    if action.status == "completed":
        status, body = "ok", as_text(action.result)
    elif action.status == "cancelled":
        status, body = (
            "error",
            f"cancelled ({action.code})" + (f": {action.error}" if action.error else ""),
        )
    else:
        status, body = "error", f"{action.code}: {action.error}"
    return action_result(action.action_id, status, action.latency_ms, _truncate(body, limit))


def next_messages(state: RunState, notes: tuple[str, ...]) -> tuple[ChatMessage, ...]:
    """The context of the next turn: the last context, the model's last output, then one user
    message with that turn's action results, the kernel's notes and any new user messages."""
    agent = state.spec
    if not state.messages:
        system = ChatMessage("system", render_system_prompt(agent, version=agent.prompt_version))
        return (system, ChatMessage("user", "\n\n".join(state.inbox) or CONTINUE))
    turn = state.turn
    if turn is None:
        raise DecisionError(f"run {state.run_id} has a context but no turn")
    output = turn.output or f"(turn {turn.status})"
    blocks = [
        result_block(action, agent.limits.max_result_chars)
        for action in state.actions.values()
        if action.turn_id == turn.turn_id
        and action.awaited
        and action.terminal
        and f'<action_result id="{action.action_id}"'
        not in output  # a sync result already injected
    ]
    parts = ["\n".join(blocks)] if blocks else []
    parts += [f"Note: {note}" for note in notes]
    parts += list(state.inbox)
    user = ChatMessage("user", "\n\n".join(parts) or CONTINUE)
    return (*state.messages, ChatMessage("assistant", output), user)
