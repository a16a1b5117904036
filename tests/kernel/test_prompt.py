"""The versioned system prompt: protocol, the agent's own prompt, tools, examples, size."""

from __future__ import annotations

import json

import pytest

from cortex.errors import ConfigError
from cortex.kernel.prompt import PROMPT_VERSIONS, render_system_prompt
from cortex.specs import AgentSpec, ToolSpec

FETCH = ToolSpec(
    name="web.fetch",
    description="Fetch a URL and return its text.",
    params_schema={
        "type": "object",
        "properties": {"url": {"type": "string"}},
        "required": ["url"],
    },
)
EXTRACT = ToolSpec(
    name="text.extract",
    description="Extract key facts from text.",
    params_schema={
        "type": "object",
        "properties": {"text": {"type": "string"}, "max_facts": {"type": "integer"}},
        "required": ["text"],
    },
)
CALC = ToolSpec(
    name="calc",
    description="Evaluate an arithmetic expression.",
    params_schema={
        "type": "object",
        "properties": {"expr": {"type": "string"}},
        "required": ["expr"],
    },
)
RESEARCHER = AgentSpec(
    name="researcher", system_prompt="You are a careful researcher.", tools=(FETCH, EXTRACT, CALC)
)


def test_the_prompt_names_its_version_and_teaches_the_protocol():
    text = render_system_prompt(RESEARCHER)
    assert text.startswith("<!-- cortex system prompt v1 -->\n")
    for piece in (
        '<action type="tool"',
        'mode="sync"',
        "fire_and_forget",
        "depends_on=",
        "$ID.field",
        '<response final="true">',
        "<action_result",
    ):
        assert piece in text


def test_the_prompt_lists_each_tool_with_description_and_schema():
    text = render_system_prompt(RESEARCHER)
    assert "You are a careful researcher." in text
    for spec in (FETCH, EXTRACT, CALC):
        assert f"- {spec.name}: {spec.description}" in text
        assert json.dumps(spec.params_schema, separators=(",", ":")) in text


def test_the_default_example_calls_the_first_tool_with_sample_params():
    text = render_system_prompt(RESEARCHER)
    assert '<action type="tool" name="web.fetch" id="a1">{"url": "..."}</action>' in text


def test_the_agents_own_few_shot_examples_replace_the_default():
    agent = AgentSpec(
        name="x",
        tools=(CALC,),
        examples=(
            'User: 2+2?\nYou: <action type="tool" name="calc" id="c1">{"expr": "2+2"}</action>',
        ),
    )
    text = render_system_prompt(agent)
    assert '{"expr": "2+2"}' in text and 'id="a1"' not in text


def test_an_agent_without_tools_gets_an_answer_only_example():
    text = render_system_prompt(AgentSpec(name="chat"))
    assert "Tools:\n(none)" in text and '<response final="true">Hello!' in text


def test_sub_agents_and_workflows_are_listed_when_present():
    text = render_system_prompt(
        AgentSpec(name="boss", agents=("researcher",), workflows=("digest",))
    )
    assert 'Agents (type="agent"' in text and "researcher" in text and "digest" in text
    assert "Agents (" not in render_system_prompt(RESEARCHER)


def test_placeholders_in_the_agents_own_text_are_not_expanded():
    text = render_system_prompt(AgentSpec(name="x", system_prompt="Say {{tools}} literally."))
    assert "Say {{tools}} literally." in text


def test_rendering_is_pure():
    assert render_system_prompt(RESEARCHER) == render_system_prompt(RESEARCHER)


def test_an_unknown_version_is_a_config_error():
    assert PROMPT_VERSIONS == ("v1",)
    with pytest.raises(ConfigError, match="unknown system prompt version 'v9'"):
        render_system_prompt(RESEARCHER, version="v9")


@pytest.mark.local_model
def test_the_prompt_with_three_tools_fits_700_gemma_tokens():
    llama_cpp = pytest.importorskip("llama_cpp")
    from cortex.adapters.llm.local_model import default_model_path

    vocab = llama_cpp.Llama(str(default_model_path()), vocab_only=True, verbose=False)
    tokens = vocab.tokenize(render_system_prompt(RESEARCHER).encode(), add_bos=False)
    assert len(tokens) < 700
