"""Agent manifests: the schema, resolution into an AgentSpec, and errors that name file, line and field."""

from __future__ import annotations

import pytest

from cortex.errors import ManifestError
from cortex.manifests.agent import AgentManifest, resolve_agent
from cortex.manifests.loader import load_file, plugins_by_name
from cortex.specs import AgentSpec, Limits
from tests.manifests.conftest import Write

FULL = """
    kind: agent
    name: researcher
    description: Answers research questions from a local corpus.
    provider: openai
    model: gpt-4o-mini
    provider_options:
      temperature: 0.2
    system_prompt: |
      You research questions and answer briefly.
    plugins: [text, ../plugins/wordstats.yaml]
    tools: ["text.*", calc.eval, wordstats.top_words]
    agents: [summarizer]
    workflows: [digest]
    context_feeds:
      - name: news
        source: https://example.org/feed.xml
        max_tokens: 300
    limits:
      max_iterations: 4
      max_parallel_actions: 2
      fail_fast: true
    examples:
      - '<response final="true">42</response>'
"""

WORDSTATS = """
    name: wordstats
    version: "0.1.0"
    runtime: subprocess
    command: [python3, wordstats.py]
    tools:
      - name: top_words
        description: The most frequent words.
        params: {type: object, properties: {text: {type: string}}, required: [text]}
      - name: save_report
        params: {type: object}
"""


async def test_a_full_manifest_resolves_into_the_spec_events_carry(write: Write) -> None:
    write("plugins/wordstats.yaml", WORDSTATS)
    path = write("agents/researcher.yaml", FULL)
    [loaded] = await load_file(path)
    assert (loaded.kind, loaded.name) == ("agent", "researcher")
    manifest: AgentManifest = loaded.manifest
    assert [f.name for f in manifest.context_feeds] == ["news"]
    assert manifest.context_feeds[0].max_tokens == 300

    spec = await resolve_agent(manifest)
    assert isinstance(spec, AgentSpec)
    # tools in the order of the patterns; a glob picks every tool of the plugin; unlisted tools are left out
    assert [t.name for t in spec.tools] == ["text.extract", "text.count", "calc.eval", "wordstats.top_words"]
    top_words = spec.tools[-1]
    assert top_words.plugin == "wordstats" and top_words.params_schema["required"] == ["text"]
    assert spec.limits == Limits(max_iterations=4, max_parallel_actions=2, fail_fast=True)
    assert (spec.provider, spec.model, spec.provider_options) == ("openai", "gpt-4o-mini", {"temperature": 0.2})
    assert spec.system_prompt.startswith("You research")
    assert (spec.agents, spec.workflows) == (("summarizer",), ("digest",))
    assert spec.examples == ('<response final="true">42</response>',)


async def test_without_tools_the_agent_gets_every_tool_of_its_plugins(write: Write) -> None:
    path = write("a.yaml", "kind: agent\nname: a\nplugins: [calc, text]\n")
    [loaded] = await load_file(path)
    spec = await resolve_agent(loaded.manifest)
    assert [t.name for t in spec.tools] == ["calc.eval", "text.extract", "text.count"]


async def test_an_agent_may_name_a_plugin_loaded_alongside(write: Write) -> None:
    write("wordstats.yaml", WORDSTATS)
    path = write("a.yaml", "kind: agent\nname: a\nimport: [wordstats.yaml]\nplugins: [wordstats]\n")
    loaded = await load_file(path)
    assert [(m.kind, m.name) for m in loaded] == [("plugin", "wordstats"), ("agent", "a")]
    spec = await resolve_agent(loaded[-1].manifest, plugins_by_name(loaded))
    assert [t.name for t in spec.tools] == ["wordstats.top_words", "wordstats.save_report"]


async def test_a_scripted_agent_gets_an_absolute_script_path(write: Write, tmp_path) -> None:
    write("scripts/hello.yaml", "rules: []\n")
    path = write("a.yaml", "kind: agent\nname: a\nprovider: scripted\nprovider_options: {script: scripts/hello.yaml}\n")
    [loaded] = await load_file(path)
    spec = await resolve_agent(loaded.manifest)
    assert spec.provider_options["script"] == str(tmp_path / "scripts" / "hello.yaml")


# ---- errors --------------------------------------------------------------------------


async def _error(path) -> str:
    with pytest.raises(ManifestError) as caught:
        for item in await load_file(path):
            if item.kind == "agent":
                await resolve_agent(item.manifest)
    return str(caught.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("limits:\n  max_tokens: 0\n", "a.yaml:5: limits.max_tokens: Input should be greater than or equal to 1"),
        ("provider: nobody\n", "a.yaml:4: provider: unknown provider 'nobody'"),
        ("colour: blue\n", "a.yaml:4: colour: Extra inputs are not permitted"),
        ("tools: [calc.eval, files]\n", "a.yaml:4: tools.1: 'files' is not a tool name"),
        ("context_feeds:\n  - name: news\n", "a.yaml:5: context_feeds.0.source: Field required"),
        ("agents: [a.b]\n", "a.yaml:4: agents.0: 'a.b' is not a manifest name"),
        ("prompt_version: v9\n", "a.yaml:4: prompt_version: unknown prompt version 'v9'"),
    ],
)
async def test_schema_errors_name_file_line_and_field(write: Write, body: str, expected: str) -> None:
    path = write("a.yaml", "kind: agent\nname: a\nmodel: m\n" + body)
    assert expected in await _error(path)


async def test_every_problem_is_reported_at_once(write: Write) -> None:
    path = write("a.yaml", "kind: agent\nname: 'bad name'\nlimits:\n  max_iterations: 0\n")
    lines = (await _error(path)).splitlines()
    assert any(line.endswith("a.yaml:2: name: String should match pattern '^[A-Za-z0-9_-]+$'") for line in lines)
    assert any("a.yaml:4: limits.max_iterations" in line for line in lines)


async def test_a_tool_glob_that_matches_nothing_names_its_line(write: Write) -> None:
    path = write("a.yaml", "kind: agent\nname: a\ntools:\n  - calc.eval\n  - text.nothing*\n")
    message = await _error(path)
    assert "a.yaml:5: tools.1: text.nothing* match no tool" in message
    assert "text.extract" in message  # says what there is


async def test_an_unknown_plugin_names_its_line(write: Write) -> None:
    path = write("a.yaml", "kind: agent\nname: a\nplugins:\n  - calc\n  - gizmo\n")
    assert "a.yaml:5: plugins.1: no plugin named 'gizmo'" in await _error(path)


async def test_a_broken_plugin_file_names_the_plugin_file(write: Write) -> None:
    write("p.yaml", "name: p\nversion: '1'\nruntime: subprocess\n")
    path = write("a.yaml", "kind: agent\nname: a\nplugins: [./p.yaml]\n")
    assert "p.yaml:1: command: runtime subprocess needs a command" in await _error(path)


async def test_kind_is_required_and_checked(write: Write) -> None:
    assert "a.yaml:1: kind: missing" in await _error(write("a.yaml", "name: a\nmodel: m\n"))
    assert "b.yaml:2: kind: unknown kind 'robot'" in await _error(write("b.yaml", "name: b\nkind: robot\n"))


async def test_invalid_yaml_names_the_line(write: Write) -> None:
    path = write("a.yaml", "kind: agent\nname: a\ntools: [calc.eval\n")
    assert "a.yaml:4: invalid YAML" in await _error(path)


async def test_a_missing_plugin_file_names_the_agent_line(write: Write) -> None:
    path = write("a.yaml", "kind: agent\nname: a\nplugins:\n  - ./nowhere.yaml\n")
    assert "a.yaml:4: plugins.0: no plugin manifest at" in await _error(path)
