"""Fill the versioned system prompt template with an agent's prompt, tools and examples."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any

from cortex.errors import ConfigError
from cortex.specs import AgentSpec, ToolSpec

PROMPT_VERSIONS: tuple[str, ...] = ("v1",)
"""Template versions shipped as ``system_<version>.md`` in this package."""

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_SAMPLES: dict[str, Any] = {
    "string": "...",
    "integer": 1,
    "number": 1,
    "boolean": True,
    "array": [],
    "object": {},
}


def render_system_prompt(agent: AgentSpec, *, version: str = "v1") -> str:
    """The system prompt for ``agent``: the protocol, its own prompt, its tools and examples."""
    values = {
        "version": version,
        "agent_prompt": agent.system_prompt.strip(),
        "others": _others(agent),
        "tools": "\n".join(_tool_line(tool) for tool in agent.tools) or "(none)",
        "examples": "\n\n".join(e.strip() for e in agent.examples) or _example(agent.tools),
    }
    text = _PLACEHOLDER.sub(lambda m: values[m.group(1)], _template(version))
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


@lru_cache(maxsize=len(PROMPT_VERSIONS))
def _template(version: str) -> str:
    if version not in PROMPT_VERSIONS:
        raise ConfigError(
            f"unknown system prompt version {version!r}; known: {', '.join(PROMPT_VERSIONS)}"
        )
    return resources.files(__package__).joinpath(f"system_{version}.md").read_text(encoding="utf-8")


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _tool_line(tool: ToolSpec) -> str:
    description = f": {tool.description.strip()}" if tool.description.strip() else ""
    return f"- {tool.name}{description}\n  params: {_compact(tool.params_schema)}"


def _others(agent: AgentSpec) -> str:
    lines = []
    if agent.agents:
        lines.append(
            f'Agents (type="agent", params {{"message": "..."}}): {", ".join(agent.agents)}'
        )
    if agent.workflows:
        lines.append(f'Workflows (type="workflow"): {", ".join(agent.workflows)}')
    return "\n".join(lines)


def _sample_params(schema: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = schema.get("properties") or {}
    names = list(schema.get("required") or properties)[:3]
    params = {}
    for name in names:
        prop = properties.get(name) or {}
        if "enum" in prop and prop["enum"]:
            params[name] = prop["enum"][0]
        elif "default" in prop:
            params[name] = prop["default"]
        else:
            kind = prop.get("type", "string")
            params[name] = _SAMPLES.get(kind if isinstance(kind, str) else kind[0], "...")
    return params


def _example(tools: tuple[ToolSpec, ...]) -> str:
    if not tools:
        return 'User: Hi!\nYou: <response final="true">Hello! How can I help?</response>'
    tool = tools[0]
    params = json.dumps(_sample_params(tool.params_schema), ensure_ascii=False)
    return (
        f"User: (a task that needs {tool.name})\n"
        f'You: <action type="tool" name="{tool.name}" id="a1">{params}</action>\n'
        'Next turn, after <action_result id="a1" status="ok">...</action_result>:\n'
        'You: <response final="true">The answer, using $a1</response>'
    )
