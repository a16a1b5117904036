"""What an action may do and how it runs: target checks, param schemas, pools, timeouts, retries."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonschema
import msgspec

from cortex.kernel.decider import reasons
from cortex.kernel.decider.state import ActionState
from cortex.specs import AgentSpec, RetryPolicy, ToolSpec

ACTION_TYPES = ("tool", "llm", "agent", "workflow", "relic", "internal")
MODES = ("sync", "async", "fire_and_forget")

INTERNAL_SCHEMAS: dict[str, dict[str, Any]] = {
    "set": {
        "type": "object",
        "properties": {"name": {"type": "string", "minLength": 1}, "value": {}},
        "required": ["name", "value"],
    },
    "cancel": {
        "type": "object",
        "properties": {"action_id": {"type": "string", "minLength": 1}},
        "required": ["action_id"],
    },
}
"""The internal actions the decider runs itself, with their params schemas."""


class Placement(msgspec.Struct, frozen=True, kw_only=True):
    """Where and how one action runs: pool, lane, timeout, retries and the tool, if any."""

    pool: str
    lane: str | None = None
    timeout_s: float
    max_attempts: int
    retry: RetryPolicy
    tool: ToolSpec | None = None


def find_tool(agent: AgentSpec, name: str) -> ToolSpec | None:
    """The agent's tool called ``name``, if it has one."""
    return next((tool for tool in agent.tools if tool.name == name), None)


def check_target(agent: AgentSpec, action: ActionState) -> tuple[str, str] | None:
    """(reason, detail) if the action's type, mode or name is not allowed, else None."""
    if action.type not in ACTION_TYPES:
        return (
            reasons.UNKNOWN_ACTION_TYPE,
            f'unknown action type "{action.type}"; use one of {", ".join(ACTION_TYPES)}',
        )
    if action.mode not in MODES:
        return reasons.INVALID_MODE, f'unknown mode "{action.mode}"; use one of {", ".join(MODES)}'
    names, reason = {
        "tool": (tuple(tool.name for tool in agent.tools), reasons.UNKNOWN_TOOL),
        "agent": (agent.agents, reasons.UNKNOWN_AGENT),
        "workflow": (agent.workflows, reasons.UNKNOWN_WORKFLOW),
        "internal": (tuple(INTERNAL_SCHEMAS), reasons.UNKNOWN_INTERNAL),
    }.get(action.type, (None, ""))
    if names is not None and action.name not in names:
        return (
            reason,
            f'unknown {action.type} "{action.name}"; available: {", ".join(names) or "none"}',
        )
    return None


def check_params(agent: AgentSpec, action: ActionState, params: Any) -> tuple[str, str] | None:
    """(reason, detail) if resolved params fail the tool's or internal schema, else None."""
    if action.type == "tool":
        tool = find_tool(agent, action.name)
        schema = tool.params_schema if tool is not None else None
    else:
        schema = INTERNAL_SCHEMAS.get(action.name) if action.type == "internal" else None
    if schema is None:
        return None
    instance = {} if params is None else params
    try:
        validator = _validator(json.dumps(schema, sort_keys=True))
    except jsonschema.SchemaError as exc:
        return (
            reasons.INVALID_SCHEMA,
            f"the params schema of {action.name} is invalid: {exc.message}",
        )
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    return reasons.INVALID_PARAMS, f"params{'/' + where if where else ''}: {error.message}"


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def placement(agent: AgentSpec, action: ActionState) -> Placement:
    """Pool, lane, timeout (capped by the agent's limit) and attempts of an allowed action."""
    cap = agent.limits.action_timeout_s
    tool = find_tool(agent, action.name) if action.type == "tool" else None
    policy = tool.retry if tool is not None else RetryPolicy()
    default_timeout = tool.timeout_s if tool is not None else cap
    asked = action.timeout_s if action.timeout_s and action.timeout_s > 0 else default_timeout
    attempts = (
        policy.max_attempts if action.retry is None else min(policy.max_attempts, action.retry + 1)
    )
    return Placement(
        pool=tool.pool if tool is not None else action.type,
        lane=tool.lane if tool is not None else None,
        timeout_s=min(asked, cap),
        max_attempts=max(1, attempts),
        retry=policy,
        tool=tool,
    )


def backoff_s(policy: RetryPolicy, failed_attempt: int) -> float:
    """Delay before the attempt after ``failed_attempt``: exponential, capped, no jitter."""
    return min(
        policy.backoff_s * policy.backoff_factor ** (failed_attempt - 1), policy.max_backoff_s
    )
