"""Workflow manifests and their rendering as one protocol turn: pure, no broker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cortex.adapters.llm.base import CompletionRequest
from cortex.adapters.llm.registry import make_provider
from cortex.bus.events import ChatMessage, RunCompleted, RunFailed
from cortex.errors import ManifestError
from cortex.kernel.decider import DispatchWork
from cortex.kernel.decider.output import read_output
from cortex.kernel.protocol import ActionDeclared, ParseError, Parser
from cortex.manifests.workflow import (
    WorkflowSpec,
    WorkflowStep,
    inputs_to_vars,
    load_workflow_manifest,
    resolve_workflow,
)
from cortex.workers.workflow_render import render_workflow, workflow_agent
from tests.kernel.helpers import Run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"


def parse(text: str) -> tuple[list[ActionDeclared], list[ParseError]]:
    """What the llm pool's parser yields for ``text``."""
    parser = Parser()
    events = [*parser.feed(text), *parser.close()]
    return ([e for e in events if isinstance(e, ActionDeclared)],
            [e for e in events if isinstance(e, ParseError)])


def spec_of(*steps: WorkflowStep, output: str = "$a") -> WorkflowSpec:
    return WorkflowSpec(name="t", steps=steps, output=output)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    return path


async def test_the_example_renders_to_actions_the_parser_reads_back() -> None:
    spec = await resolve_workflow(load_workflow_manifest(EXAMPLES / "word_share.yaml"))
    actions, problems = parse(render_workflow(spec))
    assert problems == []
    assert [(a.id, a.type, a.name) for a in actions] == [
        ("words", "tool", "text.count"), ("hits", "tool", "text.count"), ("share", "tool", "calc.eval"),
    ]
    assert actions[1].params == {"text": "$vars.text", "substring": "$vars.word"}
    assert set(actions[2].refs) == {"hits", "words"}
    assert read_output(render_workflow(spec)).final == "$share"
    assert [t.name for t in spec.tools] == ["text.count", "calc.eval"]


def test_params_with_markup_and_entities_survive_the_round_trip() -> None:
    tricky = {"html": "<b>a & b</b></action><response final=\"true\">x</response>", "n": [1, None, True],
              "quote": "it's \"quoted\"", "dollars": "$$5"}
    spec = spec_of(WorkflowStep(id="a", type="tool", name="t.x", params=tricky, mode="sync",
                                depends_on=("b",), timeout_s=2.5, retry=1),
                   WorkflowStep(id="b", type="agent", name="helper", params=None),
                   output="<ok> & $a.html done")
    text = render_workflow(spec)
    actions, problems = parse(text)
    assert problems == []
    assert actions[0].params == tricky
    assert (actions[0].mode, actions[0].depends_on, actions[0].timeout, actions[0].retry) == ("sync", ("b",), 2.5, 1)
    assert actions[1].params == {}
    assert read_output(text).final == "<ok> & $a.html done"


def test_inputs_become_run_variables() -> None:
    assert inputs_to_vars({"a": ["$input.x and $input.y[0]", "$$input.x", "$inputs"]}) == {
        "a": ["$vars.x and $vars.y[0]", "$$input.x", "$inputs"]
    }


def test_the_agent_replays_exactly_the_rendered_turn() -> None:
    spec = spec_of(WorkflowStep(id="a", type="agent", name="helper", params={"message": "$input.q"}),
                   WorkflowStep(id="b", type="workflow", name="inner", params={}),
                   WorkflowStep(id="c", type="agent", name="helper", params={"message": "again"}))
    agent = workflow_agent(spec)
    assert (agent.agents, agent.workflows) == (("helper",), ("inner",))
    assert agent.limits.max_iterations == 1 and agent.limits.fail_fast

    async def replay() -> str:
        provider = make_provider(agent.provider, agent.model, dict(agent.provider_options))
        request = CompletionRequest(model="", messages=(ChatMessage("user", "go"),),
                                    max_tokens=agent.limits.max_tokens)
        return "".join([d.text async for d in provider.stream(request)])

    assert asyncio.run(replay()) == render_workflow(spec)


def _kernel_run(spec: WorkflowSpec, inputs: dict[str, Any], results: dict[str, Any]) -> tuple[Run, list[str]]:
    """Drive the pure decider as the kernel would: declared actions, turn end, results in dispatch order."""
    run = Run(workflow_agent(spec))
    run.start("go", **inputs)
    text = render_workflow(spec)
    actions, _ = parse(text)
    outputs = []
    for action in actions:
        outputs += run.declare(action.id, action.name, action.params, type=action.type, mode=action.mode,
                               depends_on=action.depends_on, timeout_s=action.timeout, retry=action.retry)
    outputs += run.end_turn(text)
    dispatched: list[str] = []
    while True:
        work = [o.item for o in outputs if isinstance(o, DispatchWork) and o.pool != "llm"]
        if not work:
            return run, dispatched
        outputs = []
        for item in work:
            dispatched.append(f"{item.action_id}:{item.params}")
            outputs += run.complete(item.action_id, results[item.action_id])


async def test_the_kernel_runs_the_dag_with_inputs_and_fills_the_output() -> None:
    spec = await resolve_workflow(load_workflow_manifest(EXAMPLES / "word_share.yaml"))
    run, dispatched = _kernel_run(
        spec, {"text": "a cat and a dog", "word": "a"},
        {"words": {"words": 5}, "hits": {"occurrences": 3}, "share": {"value": 0.6}},
    )
    assert dispatched == [
        "words:{'text': 'a cat and a dog'}",
        "hits:{'text': 'a cat and a dog', 'substring': 'a'}",
        "share:{'expression': 'round(3 / 5, 4)'}",
    ]
    assert run.last(RunCompleted).data.response == '{"value":0.6}'


def test_a_failing_step_fails_the_workflow_run_at_once() -> None:
    spec = spec_of(WorkflowStep(id="a", type="agent", name="helper", params={"message": "x"}),
                   WorkflowStep(id="b", type="agent", name="helper", params={"message": "$a.response"}),
                   output="$b.response")
    run = Run(workflow_agent(spec))
    run.start("go")
    text = render_workflow(spec)
    for action in parse(text)[0]:
        run.declare(action.id, action.name, action.params, type=action.type)
    run.end_turn(text)
    run.fail("a", code="boom")
    assert run.last(RunFailed).data.code == "action_failed"


@pytest.mark.parametrize(
    ("steps", "output", "line", "message"),
    [
        ("  - {id: a, type: tool, name: calc.eval, params: {expression: $b.x}}\n", "$a", 9,
         "steps.0.params: $b names no step"),
        ("  - {id: a, type: tool, name: calc.eval, depends_on: [zz]}\n", "$a", 9,
         "steps.0.depends_on: depends_on names 'zz'"),
        ("  - {id: a, type: tool, name: calc.eval}\n", "$nope", 10, "output: $nope names no step"),
        ("  - {id: a, type: tool, name: calc.eval, params: {e: $input.missing}}\n", "$a", 9,
         "$input.missing is not one of the inputs (q)"),
        ("  - {id: a, type: tool, name: calc.eval, params: {e: $vars.q}}\n", "$a", 9, "use $input.name"),
        ("  - {id: input, type: tool, name: calc.eval}\n", "$a", 9, "steps.0.id: 'input' is reserved"),
        ("  - {id: a, type: tool, name: calc.eval, params: {e: $b.x}}\n"
         "  - {id: b, type: tool, name: calc.eval, depends_on: a}\n", "$b", 9, "steps form a cycle: a -> b -> a"),
        ("  - {id: a, type: tool, name: calc.eval}\n  - {id: a, type: tool, name: calc.eval}\n", "$a", 10,
         "step id 'a' is used twice"),
        ("  - {id: a, type: shell, name: ls}\n", "$a", 9, "steps.0.type: Input should be"),
    ],
)
def test_manifest_errors_name_file_line_and_field(
    tmp_path: Path, steps: str, output: str, line: int, message: str
) -> None:
    text = ("kind: workflow\nname: t\ninputs:\n  type: object\n  properties:\n    q: {type: string}\n"
            "description: test\nsteps:\n" + steps + f"output: '{output}'\n")
    with pytest.raises(ManifestError) as info:
        load_workflow_manifest(write(tmp_path, text))
    assert f"wf.yaml:{line}:" in str(info.value)
    assert message in str(info.value)


async def test_unknown_tools_are_reported_when_resolving(tmp_path: Path) -> None:
    path = write(tmp_path, "kind: workflow\nname: t\nsteps:\n  - id: a\n    type: tool\n    name: no.such\n"
                           "output: $a\n")
    with pytest.raises(ManifestError, match=r"wf.yaml:6: steps.0.name: unknown tool 'no.such'"):
        await resolve_workflow(load_workflow_manifest(path))


async def test_a_plugin_listed_by_path_offers_its_tools(tmp_path: Path) -> None:
    plugin = EXAMPLES.parent / "plugins" / "wordstats" / "plugin.yaml"
    path = write(tmp_path, f"kind: workflow\nname: t\nplugins: ['{plugin}']\nsteps:\n"
                           "  - {id: a, type: tool, name: wordstats.top_words, params: {text: $input.t}}\n"
                           "  - {id: b, type: tool, name: text.count, params: {text: $input.t}}\n"
                           "output: $a\n")
    spec = await resolve_workflow(load_workflow_manifest(path))
    assert [(t.name, t.pool) for t in spec.tools] == [("wordstats.top_words", "tool"), ("text.count", "tool")]
    assert spec.tools[0].params_schema["required"] == ["text"]
