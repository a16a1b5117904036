"""Resolved specifications carried inside events (agents, tools, limits).

Manifests (pydantic, YAML) are resolved into these plain msgspec structs, so an event
carries everything the pure decider needs and a replay never reads a manifest again.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

ActionType = Literal["tool", "llm", "agent", "workflow", "relic", "internal"]
ActionMode = Literal["sync", "async", "fire_and_forget"]


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How often and how patiently a failed action is tried again."""

    max_attempts: int = 1
    backoff_s: float = 0.5
    backoff_factor: float = 2.0
    max_backoff_s: float = 30.0


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A tool the model may call: name, description and the JSON schema of its params."""

    name: str
    description: str = ""
    params_schema: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object"})
    plugin: str = ""
    pool: str = "tool"
    lane: str | None = None
    timeout_s: float = 60.0
    idempotent: bool = True
    side_effects: Literal["read_only", "write"] = "read_only"
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Per-run limits an agent declares."""

    max_iterations: int = 8
    max_parallel_actions: int = 8
    action_timeout_s: float = 120.0
    fail_fast: bool = False
    max_tokens: int = 1024
    max_result_chars: int = 4000


class AgentSpec(msgspec.Struct, frozen=True, kw_only=True):
    """An agent resolved from its manifest: model, prompt, tools and limits."""

    name: str
    provider: str = "scripted"
    model: str = ""
    system_prompt: str = ""
    tools: tuple[ToolSpec, ...] = ()
    agents: tuple[str, ...] = ()
    workflows: tuple[str, ...] = ()
    limits: Limits = msgspec.field(default_factory=Limits)
    provider_options: dict[str, Any] = msgspec.field(default_factory=dict)
    prompt_version: str = "v1"
    examples: tuple[str, ...] = ()
