"""The GBNF grammar generated from tool specs: it compiles in llama.cpp, everything it admits
parses cleanly with schema-valid params, it rejects what is invalid, and the local model
generating under it yields output the parser accepts.

Params are validated with ``jsonschema`` (Draft 2020-12). Acceptance is checked twice:
with the pure-Python recogniser in ``tests/protocol/gbnf.py`` and with llama.cpp's own
grammar engine (its grammar sampler, token by token, over the model's vocabulary).
"""

from __future__ import annotations

import ctypes
import math
import random
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from cortex.errors import ConfigError
from cortex.kernel.protocol import ActionDeclared, ParseError, Parser, ResponseDelta
from cortex.kernel.protocol.grammar import protocol_grammar
from cortex.specs import ToolSpec
from tests.protocol.gbnf import Grammar

WEB = (
    ToolSpec(
        name="web.fetch",
        params_schema={
            "type": "object",
            "properties": {
                "url": {"type": "string", "minLength": 1, "maxLength": 40},
                "timeout_s": {"type": "number", "minimum": 0},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "required": ["url"],
            "additionalProperties": False,
        },
    ),
    ToolSpec(
        name="text.extract",
        params_schema={
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "max_items": {"type": "integer", "minimum": 1},
                "style": {"enum": ["short", "long"]},
            },
            "required": ["text", "style"],
        },
    ),
)
RICH = (
    ToolSpec(
        name="db.query",
        description="nested objects, arrays, unions and awkward names",
        params_schema={
            "type": "object",
            "properties": {
                "filter": {
                    "type": "object",
                    "properties": {
                        "field name": {"type": "string", "maxLength": 8},
                        "op": {"enum": ["=", "<", "&", 'say "hi"', "ü", 3, None, True]},
                        "value": {"type": ["integer", "null", "boolean"]},
                    },
                    "required": ["op"],
                },
                "columns": {
                    "type": "array",
                    "items": {"type": "string", "maxLength": 5},
                    "minItems": 1,
                    "maxItems": 3,
                },
                "tags": {"type": "array", "items": {"const": "x<y"}, "maxItems": 2},
                "limit": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]},
                "dry_run": {"type": "boolean"},
                "nothing": {"type": "null"},
                "weight": {"type": "number"},
                "empty": {"type": "array", "maxItems": 0},
                "closed": {"type": "object", "additionalProperties": False},
            },
        },
    ),
    ToolSpec(name="ns.tool-name_2"),
    ToolSpec(name="any", params_schema={}),
)
FALLBACK = (
    ToolSpec(
        name="odd",
        params_schema={
            "type": "object",
            "properties": {
                "code": {"type": "string", "pattern": "^[A-Z]+$"},
                "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            },
            "required": ["code"],
        },
    ),
    ToolSpec(name="whole", params_schema={"type": "object", "minProperties": 2}),
)
"""Schemas with unsupported keywords: those parts fall back to any JSON value."""

CASES: dict[str, tuple[tuple[ToolSpec, ...], dict[str, Any], bool]] = {
    "web": (WEB, {}, True),
    "web-3-actions": (WEB, {"max_actions": 3}, True),
    "web-no-thought": (WEB, {"allow_thought": False, "max_actions": 2}, True),
    "web-short-text": (WEB, {"max_text": 12, "max_actions": 1}, True),
    "rich": (RICH, {"max_actions": 4}, True),
    "fallback": (FALLBACK, {"max_actions": 2}, False),
    "no-tools": ((), {}, True),
    "no-actions": (WEB, {"max_actions": 0}, True),
}
"""Name -> (tools, grammar options, whether every schema is fully supported)."""

SAMPLES = 80


def parse(text: str) -> list[Any]:
    """Every event the protocol parser yields for ``text`` fed in one piece."""
    parser = Parser()
    return parser.feed(text) + parser.close()


class LlamaGrammarEngine:
    """llama.cpp's grammar engine over the local model's vocabulary (no weights loaded)."""

    def __init__(self) -> None:
        import llama_cpp

        from cortex.adapters.llm.local_model import default_model_path

        self.lib = llama_cpp
        self.llm = llama_cpp.Llama(str(default_model_path()), vocab_only=True, verbose=False)
        self.vocab = self.llm._model.vocab

    def compiles(self, grammar: str) -> bool:
        """Whether llama.cpp's GBNF parser accepts the grammar text."""
        sampler = self.lib.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
        if sampler:
            self.lib.llama_sampler_free(sampler)
        return bool(sampler)

    def accepts(self, grammar: str, text: str) -> bool:
        """Whether the grammar lets the tokens of ``text`` through, then end-of-generation."""
        lib = self.lib
        sampler = lib.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
        assert sampler, "grammar did not compile"
        eos = self.llm.token_eos()
        try:
            for token in [*self.llm.tokenize(text.encode(), add_bos=False), eos]:
                data = lib.llama_token_data(id=token, logit=0.0, p=0.0)
                array = lib.llama_token_data_array(
                    data=ctypes.pointer(data), size=1, selected=-1, sorted=False
                )
                lib.llama_sampler_apply(sampler, ctypes.byref(array))
                if math.isinf(data.logit):
                    return False
                if token == eos:
                    return True
                lib.llama_sampler_accept(sampler, token)
        finally:
            lib.llama_sampler_free(sampler)
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaGrammarEngine]:
    """llama.cpp's grammar engine, loaded once for the module."""
    eng = LlamaGrammarEngine()
    yield eng
    eng.llm.close()


def check_output(text: str, tools: tuple[ToolSpec, ...], validate: bool) -> list[ActionDeclared]:
    """Assert ``text`` parses cleanly into well-formed actions and ends in a final response."""
    events = parse(text)
    errors = [e for e in events if isinstance(e, ParseError)]
    assert not errors, f"{errors} in {text!r}"
    actions = [e for e in events if isinstance(e, ActionDeclared)]
    assert len(actions) == text.count("<action "), "an action was lost"
    schemas = {t.name: t.params_schema for t in tools}
    for i, action in enumerate(actions, 1):
        assert action.id == f"a{i}"
        assert (action.type, action.name) == ("tool", action.name) and action.name in schemas
        assert action.mode in ("sync", "async", "fire_and_forget")
        assert set(action.depends_on) <= {f"a{j}" for j in range(1, i)}
        assert isinstance(action.params, dict)
        if validate:
            jsonschema.Draft202012Validator(schemas[action.name]).validate(action.params)
    finals = [i for i, e in enumerate(events) if isinstance(e, ResponseDelta) and e.final]
    if finals:
        tail = events[finals[0] :]
        assert all(isinstance(e, ResponseDelta) and e.final for e in tail), tail
    assert text.rstrip().endswith("</response>")
    assert text[text.rfind("<response") :].startswith('<response final="true">')
    return actions


# ---- compiling ---------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_grammar_compiles_in_llama_cpp(case: str, engine: LlamaGrammarEngine) -> None:
    tools, options, _ = CASES[case]
    grammar = protocol_grammar(tools, **options)
    assert engine.compiles(grammar), grammar
    assert Grammar(grammar).rules["root"]


def test_a_broken_grammar_does_not_compile(engine: LlamaGrammarEngine) -> None:
    assert not engine.compiles(protocol_grammar(WEB) + "\nbroken ::= (\n")


# ---- what the grammar admits ----------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_everything_sampled_parses_with_valid_params(case: str) -> None:
    tools, options, supported = CASES[case]
    grammar = Grammar(protocol_grammar(tools, **options))
    rng = random.Random(case)
    counts = []
    for _ in range(SAMPLES):
        text = grammar.sample(rng)
        assert grammar.accepts(text), text
        check_output(text, tools, validate=supported)
        counts.append(text.count("<action "))
    budget = options.get("max_actions", 16) if tools else 0
    assert max(counts) <= budget
    if budget:
        assert max(counts) >= min(budget, 2), "the sampler should reach several actions"


@pytest.mark.parametrize("case", ["web", "rich"])
def test_llama_cpp_accepts_what_the_sampler_draws(case: str, engine: LlamaGrammarEngine) -> None:
    tools, options, _ = CASES[case]
    text_grammar = protocol_grammar(tools, **options)
    grammar = Grammar(text_grammar)
    rng = random.Random(f"llama-{case}")
    for _ in range(15):
        text = grammar.sample(rng)
        assert engine.accepts(text_grammar, text), text


def test_unsupported_keywords_fall_back_to_any_json() -> None:
    grammar = Grammar(protocol_grammar(FALLBACK))
    call = '<action type="tool" name="{}" id="a1" mode="async">{}</action>'
    final = '<response final="true">ok</response>'
    assert grammar.accepts(call.format("odd", '{"code":[1,{"x":null}]}') + final)
    assert grammar.accepts(call.format("whole", '{"any":1}') + final)
    assert not grammar.accepts(call.format("odd", '{"either":1}') + final)  # code required
    assert not grammar.accepts(call.format("whole", "[1]") + final)  # params are an object


# ---- what it rejects -------------------------------------------------------------------

ACTION = '<action type="tool" name="{name}" id="{id}" mode="{mode}"{deps}>{body}</action>'


def action(
    body: str = '{"url":"https://x.org"}',
    name: str = "web.fetch",
    id: str = "a1",
    mode: str = "sync",
    deps: str = "",
) -> str:
    """One action element in the grammar's canonical form."""
    return ACTION.format(name=name, id=id, mode=mode, deps=deps, body=body)


FINAL = '<response final="true">done</response>'
VALID = {
    "thought-action-final": f"<thought>check it</thought>\n{action()}\n{FINAL}",
    "nested-actions": "<thought>two: "
    + action()
    + " and "
    + action('{"text":"$a1.body","style":"short","max_items":3}', "text.extract", "a2",
             "async", ' depends_on="a1"')
    + f" ok</thought>\n{FINAL}",
    "interim-then-final": f'<response final="false">wait</response>\n{FINAL}',
    "full-segments": f'<thought>a</thought><response final="false">b</response>{action()}'
    f'<thought>c</thought> <response final="false">d</response>\n{FINAL}',
    "escaped-json": action('{"url":"a\\u003cb\\n\\"q\\"", "headers": {"k": "v"}}') + FINAL,
    "only-final": FINAL,
}  # fmt: skip
INVALID = {
    "unknown-tool": action(name="web.post") + FINAL,
    "wrong-type": action('{"url":5}') + FINAL,
    "missing-required": action("{}") + FINAL,
    "extra-property": action('{"url":"x","bogus":1}') + FINAL,
    "too-long": action('{"url":"' + "x" * 41 + '"}') + FINAL,
    "too-short": action('{"url":""}') + FINAL,
    "not-in-enum": action('{"text":"t","style":"medium"}', "text.extract") + FINAL,
    "below-minimum": action('{"url":"x","timeout_s":-1}') + FINAL,
    "integer-expected": action('{"text":"t","style":"long","max_items":1.5}', "text.extract")
    + FINAL,
    "map-value-type": action('{"url":"x","headers":{"k":1}}') + FINAL,
    "invalid-json": action('{"url":"x",}') + FINAL,
    "raw-lt-in-json": action('{"url":"a<b"}') + FINAL,
    "raw-amp-in-json": action('{"url":"a&b"}') + FINAL,
    "lone-surrogate": action('{"url":"\\ud800"}') + FINAL,
    "lt-in-text": '<response final="true">a < b</response>',
    "amp-in-text": "<thought>this &amp; that</thought>" + FINAL,
    "no-final": '<response final="false">wait</response>',
    "text-after-final": FINAL + " more",
    "element-after-final": FINAL + action(),
    "stray-text": "hello " + FINAL,
    "duplicate-id": action() + action() + FINAL,
    "wrong-ordinal": action(id="a2") + FINAL,
    "free-form-id": action(id="fetch") + FINAL,
    "forward-dependency": action(deps=' depends_on="a2"') + action(id="a2") + FINAL,
    "too-many-actions": action() + action(id="a2") + action(id="a3") + FINAL,
    "bad-mode": action(mode="later") + FINAL,
    "unclosed-thought": "<thought>hmm" + FINAL,
    "two-thoughts-in-a-segment": "<thought>a</thought><thought>b</thought>" + FINAL,
    "two-interims-in-a-segment": '<response final="false">a</response>' * 2 + FINAL,
    "interim-before-thought": '<response final="false">a</response><thought>b</thought>' + FINAL,
    "nested-thought": "<thought><thought>x</thought></thought>" + FINAL,
    "other-type": action().replace('type="tool"', 'type="agent"') + FINAL,
}


@pytest.fixture(scope="module")
def web_grammar() -> str:
    """The grammar the positive and negative examples are judged by."""
    return protocol_grammar(WEB, max_actions=2)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_examples_are_admitted(
    name: str, web_grammar: str, engine: LlamaGrammarEngine
) -> None:
    text = VALID[name]
    assert Grammar(web_grammar).accepts(text)
    assert engine.accepts(web_grammar, text)
    check_output(text, WEB, validate=True)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_examples_are_rejected(
    name: str, web_grammar: str, engine: LlamaGrammarEngine
) -> None:
    text = INVALID[name]
    assert not Grammar(web_grammar).accepts(text)
    assert not engine.accepts(web_grammar, text)


# ---- resuming after a prefix ---------------------------------------------------------

RESULT = (
    '<action_result id="a1" status="ok" latency_ms="5">'
    '<![CDATA[{"x": "</thought>"}]]></action_result>'
)


def test_resume_inside_a_thought_continues_the_thought() -> None:
    prefix = "<thought>Look it up.\n" + action() + RESULT
    grammar = Grammar(protocol_grammar(WEB, max_actions=2, resume_from=prefix))
    assert grammar.accepts(" then</thought>" + FINAL)
    assert grammar.accepts(action(id="a2", deps=' depends_on="a1"') + "</thought>" + FINAL)
    assert not grammar.accepts(action(id="a1") + "</thought>" + FINAL)  # a1 is taken
    assert not grammar.accepts(FINAL)  # the thought must close first
    rng = random.Random(7)
    for _ in range(SAMPLES):
        rest = grammar.sample(rng)
        check_output("<thought>Look it up.\n" + action() + rest, WEB, validate=True)


def test_resume_after_a_thought_allows_no_second_thought() -> None:
    grammar = Grammar(protocol_grammar(WEB, resume_from="<thought>a</thought>\n"))
    assert grammar.accepts('<response final="false">b</response>' + action() + FINAL)
    assert not grammar.accepts("<thought>b</thought>" + FINAL)


def test_resume_at_top_level_carries_the_action_budget() -> None:
    prefix = action() + "\n" + RESULT + "\n"
    grammar = Grammar(protocol_grammar(WEB, max_actions=1, resume_from=prefix))
    assert grammar.accepts(FINAL)
    assert not grammar.accepts(action(id="a2") + FINAL)
    assert Grammar(protocol_grammar(WEB, max_actions=2, resume_from=prefix)).accepts(
        action(id="a2") + FINAL
    )


@pytest.mark.parametrize(
    ("prefix", "rest"),
    [
        ('<response final="false">Work', " in progress</response>" + FINAL),
        ('<response final="true">The answer', " is 4.</response>"),
    ],
)  # fmt: skip
def test_resume_inside_a_response(prefix: str, rest: str) -> None:
    grammar = Grammar(protocol_grammar(WEB, resume_from=prefix))
    assert grammar.accepts(rest)
    assert not grammar.accepts(rest + FINAL)
    check_output(prefix + rest, WEB, validate=True)


@pytest.mark.parametrize(
    "prefix",
    [
        "<thought>x</thought><act",
        '<action type="tool" name="web.fetch" id="a1" mode="sync">{"url":',
        FINAL,
    ],
)
def test_resume_refuses_points_it_cannot_continue(prefix: str) -> None:
    with pytest.raises(ConfigError):
        protocol_grammar(WEB, resume_from=prefix)


def test_resume_in_a_thought_needs_thoughts_allowed() -> None:
    with pytest.raises(ConfigError):
        protocol_grammar(WEB, allow_thought=False, resume_from="<thought>hm")


@pytest.mark.parametrize("options", [{"max_actions": -1}, {"max_text": 0}, {"max_text": 5000}])
def test_bad_bounds_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        protocol_grammar(WEB, **options)


# ---- end to end with the local model --------------------------------------------------

PROMPT = (
    "<start_of_turn>user\nYou are an agent. Answer in the Cortex protocol: an optional "
    '<thought>, tool calls as <action type="tool" name="NAME" id="a1" mode="sync">'
    '{JSON params}</action>, and a final <response final="true">answer</response>.\n'
    "Tools: web.fetch {url}, text.extract {text, style: short|long}.\n"
    "Fetch https://example.org and summarise it.<end_of_turn>\n<start_of_turn>model\n"
)


@pytest.mark.local_model
def test_local_model_under_the_grammar_yields_parseable_output() -> None:
    import llama_cpp

    from cortex.adapters.llm.local_model import default_model_path

    grammar = protocol_grammar(WEB, max_actions=2, max_text=60)
    # One thread: sampling under a grammar is single-threaded over Gemma's 262k vocabulary,
    # and extra threads only spin on a busy machine. Sampled at 0.8 (seeded), this prompt
    # loops on empty thoughts unless the grammar bounds the output.
    llm = llama_cpp.Llama(str(default_model_path()), n_ctx=2048, n_threads=1, verbose=False)
    try:
        out = llm.create_completion(
            PROMPT,
            max_tokens=200,
            temperature=0.8,
            seed=3,
            grammar=llama_cpp.LlamaGrammar.from_string(grammar, verbose=False),
        )
    finally:
        llm.close()
    choice = out["choices"][0]
    assert choice["finish_reason"] == "stop", choice
    actions = check_output(choice["text"], WEB, validate=True)
    assert actions, choice["text"]
