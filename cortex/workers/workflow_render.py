"""Render a workflow as one model turn in the Cortex protocol, and the agent that replays it (pure).

A workflow runs as a child run whose only turn is its steps written as ``<action>`` elements
and its output as the final ``<response>``, replayed by the scripted provider. The llm pool
parses that turn like any model output and the kernel schedules the DAG with its usual rules
(dependencies, ``$id`` references, retries, timeouts, cancellation); the final response, with
its references filled in by the kernel, is the workflow's output.
"""

from __future__ import annotations

import html
import json
from typing import Any

import msgspec

from cortex.adapters.llm.scripted import count_tokens
from cortex.manifests.workflow import WorkflowSpec, WorkflowStep, inputs_to_vars
from cortex.specs import AgentSpec, Limits

_MARKUP_IN_JSON = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def params_json(params: Any) -> str:
    """Compact JSON with ``<``, ``>`` and ``&`` escaped, so no JSON value can look like markup."""
    text = msgspec.json.encode({} if params is None else params).decode()
    for char, escaped in _MARKUP_IN_JSON.items():
        text = text.replace(char, escaped)
    return text


def render_step(step: WorkflowStep) -> str:
    """One step as an ``<action>`` element (``$input.x`` read as the run variable ``$vars.x``)."""
    attributes = {"type": step.type, "name": step.name, "id": step.id}
    if step.mode != "async":
        attributes["mode"] = step.mode
    if step.depends_on:
        attributes["depends_on"] = ",".join(step.depends_on)
    if step.timeout_s is not None:
        attributes["timeout"] = f"{step.timeout_s:g}"
    if step.retry is not None:
        attributes["retry"] = str(step.retry)
    tag = " ".join(f'{key}="{html.escape(value)}"' for key, value in attributes.items())
    return f"<action {tag}>{params_json(inputs_to_vars(step.params))}</action>"


def render_workflow(spec: WorkflowSpec) -> str:
    """The whole workflow as one turn: every step, then the output as the final response."""
    lines = [render_step(step) for step in spec.steps]
    output = html.escape(inputs_to_vars(spec.output), quote=False)
    lines.append(f'<response final="true">{output}</response>')
    return "\n".join(lines)


def workflow_agent(spec: WorkflowSpec) -> AgentSpec:
    """The agent of a workflow's child run: the scripted provider replaying the rendered turn.

    One turn (``max_iterations=1``) and ``fail_fast``: a step that fails for good fails the
    run at once instead of giving the script another turn.
    """
    text = render_workflow(spec)
    return AgentSpec(
        name=f"workflow.{spec.name}",
        provider="scripted",
        system_prompt=spec.description,
        tools=spec.tools,
        agents=_names(spec, "agent"),
        workflows=_names(spec, "workflow"),
        limits=Limits(
            max_iterations=1,
            max_parallel_actions=spec.max_parallel,
            action_timeout_s=spec.step_timeout_s,
            fail_fast=True,
            max_tokens=count_tokens(text) + 16,
        ),
        provider_options={"script": [{"text": text}]},
    )


def workflow_message(spec: WorkflowSpec, inputs: dict[str, Any]) -> str:
    """The child run's first message: which workflow, with which inputs (for people reading the log)."""
    return f"workflow {spec.name} with inputs {json.dumps(inputs, sort_keys=True)}"


def _names(spec: WorkflowSpec, step_type: str) -> tuple[str, ...]:
    """The distinct names of the steps of one type, in order."""
    return tuple(dict.fromkeys(step.name for step in spec.steps if step.type == step_type))
