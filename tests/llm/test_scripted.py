"""The scripted provider: rules, determinism, continuation, YAML scripts and pacing."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cortex.adapters.llm.base import CompletionRequest, Provider, StreamDelta
from cortex.adapters.llm.registry import make_provider
from cortex.adapters.llm import scripted
from cortex.adapters.llm.scripted import ScriptedProvider, count_tokens, tokenize
from cortex.bus.events import ChatMessage
from cortex.errors import ConfigError, ProviderError

ACTION = '<action type="tool" name="web.fetch" id="wiki" mode="sync">{"url": "https://x"}</action>'
FINAL = '<response final="true">Paris is the capital.</response>'
RESULT = '<action_result id="wiki" status="ok" latency_ms="12"><![CDATA[Paris]]></action_result>'

RULES: list[dict[str, Any]] = [
    {"after_result": "wiki", "text": FINAL},
    {"user_regex": r"capital of \w+", "text": "<thought>Look it up.</thought>" + ACTION},
    {"user_contains": "hello", "text": '<response final="true">Hi!</response>'},
    {"prompt_contains": "SYSTEM-B", "text": "system B answered"},
]


def ask(user: str, *, system: str = "You are terse.", **fields: Any) -> CompletionRequest:
    """A request with a system prompt and one user message."""
    messages = (ChatMessage("system", system), ChatMessage("user", user))
    return CompletionRequest(model="script", messages=messages, **fields)


async def run(provider: ScriptedProvider, request: CompletionRequest) -> list[StreamDelta]:
    """Every delta of one stream."""
    return [delta async for delta in provider.stream(request)]


def text_of(deltas: list[StreamDelta]) -> str:
    """The streamed text."""
    return "".join(d.text for d in deltas)


@given(st.text())
def test_tokens_join_back_to_the_text(text: str) -> None:
    tokens = tokenize(text)
    assert "".join(tokens) == text
    assert count_tokens(text) == len(tokens)
    assert all(tokens)


def test_tokenisation_is_words_punctuation_runs_and_whitespace() -> None:
    assert tokenize('Hi, you <a id="x">\n\n') == [
        "Hi",
        ",",
        " you",
        " <",
        "a",
        " id",
        '="',
        "x",
        '">',
        "\n\n",
    ]


async def test_first_matching_rule_wins() -> None:
    provider = ScriptedProvider(RULES)
    assert text_of(await run(provider, ask("What is the capital of France?"))).endswith(ACTION)
    assert (
        text_of(await run(provider, ask("hello there"))) == '<response final="true">Hi!</response>'
    )
    assert text_of(await run(provider, ask("anything", system="SYSTEM-B"))) == "system B answered"
    with pytest.raises(ProviderError, match="no rule matches"):
        await run(provider, ask("unmatched"))


async def test_output_is_deterministic_and_usage_counts_tokens() -> None:
    provider = ScriptedProvider(RULES, tokens_per_chunk=3)
    request = ask("capital of France")
    first, second = await run(provider, request), await run(provider, request)
    assert first == second
    expected = RULES[1]["text"]
    assert text_of(first) == expected
    assert all(count_tokens(d.text) == 3 for d in first[:-2])
    final = first[-1]
    assert final.text == "" and final.stop_reason == "end_turn"
    assert final.usage is not None
    assert final.usage.completion_tokens == count_tokens(expected)
    assert final.usage.prompt_tokens == count_tokens("You are terse.\ncapital of France\n")


async def test_continues_from_a_prefix_of_the_rule_text() -> None:
    provider = ScriptedProvider(RULES)
    full = RULES[1]["text"]
    cut = len("<thought>Look it up.</thought>")
    deltas = await run(provider, ask("capital of France", assistant_prefix=full[:cut]))
    assert text_of(deltas) == full[cut:]


async def test_continues_after_an_injected_result() -> None:
    provider = ScriptedProvider(RULES)
    prefix = RULES[1]["text"] + "\n" + RESULT + "\n"
    assert text_of(await run(provider, ask("capital of France", assistant_prefix=prefix))) == FINAL
    partial = prefix + FINAL[:10]
    assert (
        text_of(await run(provider, ask("capital of France", assistant_prefix=partial)))
        == FINAL[10:]
    )


async def test_result_in_a_later_turn_matches_too() -> None:
    provider = ScriptedProvider(RULES)
    messages = (
        ChatMessage("user", "capital of France"),
        ChatMessage("assistant", RULES[1]["text"]),
        ChatMessage("user", RESULT),
    )
    deltas = await run(provider, CompletionRequest(model="s", messages=messages))
    assert text_of(deltas) == FINAL


async def test_prefix_that_the_rule_does_not_continue_is_an_error() -> None:
    provider = ScriptedProvider(RULES)
    with pytest.raises(ProviderError, match="does not continue the assistant prefix"):
        await run(provider, ask("hello", assistant_prefix="something else"))


async def test_stop_sequences_and_max_tokens_cut_the_output() -> None:
    provider = ScriptedProvider(RULES)
    stopped = await run(provider, ask("capital of France", stop=("</thought>",)))
    assert text_of(stopped) == "<thought>Look it up."
    assert stopped[-1].stop_reason == "stop_sequence"
    capped = await run(provider, ask("capital of France", max_tokens=4))
    assert text_of(capped) == "".join(tokenize(RULES[1]["text"])[:4])
    assert capped[-1].stop_reason == "max_tokens"
    assert capped[-1].usage is not None and capped[-1].usage.completion_tokens == 4


def test_loads_yaml_with_pacing(tmp_path: Path) -> None:
    path = tmp_path / "script.yaml"
    path.write_text(
        "ttft_s: 0.1\ntoken_delay_s: 0.01\ntokens_per_chunk: 2\n"
        "rules:\n"
        "  - after_result: [a, b]\n    text: both done\n"
        "  - user_contains: hi\n    text: hello\n",
        encoding="utf-8",
    )
    provider = ScriptedProvider.from_yaml(path, token_delay_s=0.02)
    assert (provider.ttft_s, provider.token_delay_s, provider.tokens_per_chunk) == (0.1, 0.02, 2)
    assert provider.rules[0].result_ids == ("a", "b")
    assert provider.rules[1].user_contains == "hi"


async def test_registry_builds_from_a_bare_rule_list(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text("- text: always this\n", encoding="utf-8")
    provider = make_provider("scripted", "", {"script": str(path)})
    assert isinstance(provider, Provider)
    assert isinstance(provider, ScriptedProvider)
    assert text_of(await run(provider, ask("x"))) == "always this"


@pytest.mark.parametrize(
    "content, message",
    [
        ("rules:\n  - txt: typo\n", "invalid script"),
        ("rules:\n  - user_regex: '('\n    text: x\n", "bad regex"),
        ("rules: [unclosed\n", "cannot read script"),
    ],
)
def test_bad_scripts_are_config_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        ScriptedProvider.from_yaml(path)


async def test_tokens_are_scheduled_at_ttft_then_every_token_delay(monkeypatch) -> None:
    """The provider asks the loop's clock for exactly ttft, ttft + delay, ... after the start."""
    ttft, delay, n = 0.2, 0.02, 40
    loop = asyncio.get_running_loop()
    deadlines: list[float] = []

    async def record(_loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        deadlines.append(deadline)

    monkeypatch.setattr(scripted, "_sleep_until", record)
    provider = ScriptedProvider([{"text": "w" + " w" * (n - 1)}], ttft_s=ttft, token_delay_s=delay)
    before = loop.time()
    texts = [d.text async for d in provider.stream(ask("go")) if d.text]
    assert len(texts) == len(deadlines) == n
    assert before + ttft <= deadlines[0] <= loop.time() + ttft
    for i, deadline in enumerate(deadlines):
        assert deadline - deadlines[0] == pytest.approx(i * delay, abs=1e-9)


async def test_timing_is_within_five_percent_of_the_configuration() -> None:
    """On the real clock: the stream's length and its median token gap are within 5%."""
    ttft, delay, n = 0.2, 0.02, 40
    provider = ScriptedProvider([{"text": "w" + " w" * (n - 1)}], ttft_s=ttft, token_delay_s=delay)
    start = time.perf_counter()
    arrivals = [time.perf_counter() - start async for d in provider.stream(ask("go")) if d.text]
    assert len(arrivals) == n
    # The schedule is absolute (see the test above), so one stall of a loaded machine delays
    # one token, not the end of the stream nor the median gap; those are what is checked here.
    assert arrivals[-1] == pytest.approx(ttft + (n - 1) * delay, rel=0.05)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert statistics.median(gaps) == pytest.approx(delay, rel=0.05)
