"""The in-process llama.cpp provider against the real local model (Gemma 3 270M)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import aclosing
from itertools import pairwise
from pathlib import Path

import llama_cpp
import pytest

from cortex.adapters.llm.base import CompletionRequest, Provider, StreamDelta
from cortex.adapters.llm.llama_local import LlamaLocalProvider, gemma_prompt
from cortex.bus.events import ChatMessage
from cortex.errors import ModelNotFound, ProviderError
from cortex.kernel.protocol import ActionDeclared, ParseError, Parser
from cortex.kernel.protocol.grammar import protocol_grammar
from cortex.specs import ToolSpec

pytestmark = pytest.mark.local_model

FRANCE = (ChatMessage("user", "Name the capital of France in one sentence."),)
TOOLS = (
    ToolSpec(
        name="web.fetch",
        params_schema={
            "type": "object",
            "properties": {"url": {"type": "string", "maxLength": 40}},
            "required": ["url"],
        },
    ),
)
SYSTEM = (
    "You are an agent. Answer in the Cortex protocol: an optional <thought>, tool calls as "
    '<action type="tool" name="web.fetch" id="a1" mode="sync">{"url": "..."}</action>, '
    'and a final <response final="true">answer</response>.'
)


def ask(messages: tuple[ChatMessage, ...] = FRANCE, **fields: object) -> CompletionRequest:
    """A completion request for the local model."""
    return CompletionRequest(model="local", messages=messages, **fields)  # type: ignore[arg-type]


async def collect(provider: LlamaLocalProvider, request: CompletionRequest) -> list[StreamDelta]:
    """Every delta of one completion."""
    return [delta async for delta in provider.stream(request)]


def text_of(deltas: list[StreamDelta]) -> str:
    """The streamed text."""
    return "".join(d.text for d in deltas)


def parse(text: str) -> list[object]:
    """Protocol events for ``text``."""
    parser = Parser()
    return parser.feed(text) + parser.close()


@pytest.fixture(scope="module")
def provider(local_model_path: Path) -> Iterator[LlamaLocalProvider]:
    """One provider (one loaded model) for the module."""
    prov = LlamaLocalProvider(local_model_path)
    yield prov
    asyncio.run(prov.aclose())


async def wait_idle(provider: LlamaLocalProvider, within_s: float) -> None:
    """Poll until the provider's generation thread is idle, failing after ``within_s``."""
    async with asyncio.timeout(within_s):
        while provider.generating:
            await asyncio.sleep(0.01)


def test_it_is_a_provider(provider: LlamaLocalProvider) -> None:
    assert isinstance(provider, Provider)
    assert provider.supports_continuation and provider.supports_grammar


async def test_streams_tokens_without_blocking_the_loop(provider: LlamaLocalProvider) -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    arrivals: list[float] = []
    deltas: list[StreamDelta] = []
    try:
        async for delta in provider.stream(ask(max_tokens=40)):
            arrivals.append(time.monotonic())
            deltas.append(delta)
    finally:
        task.cancel()
    texts = [d for d in deltas if d.text]
    assert len(texts) >= 10, "tokens arrive one by one"
    last = deltas[-1]
    assert last.stop_reason == "max_tokens" and last.usage is not None
    assert last.usage.completion_tokens == 40 and last.usage.prompt_tokens > 10
    during = [t for t in ticks if arrivals[0] <= t <= arrivals[-1]]
    gaps = [b - a for a, b in pairwise(during)]
    streaming_s = arrivals[-1] - arrivals[0]
    assert len(during) >= 10, "the loop kept ticking while tokens were generated"
    assert max(gaps) < streaming_s / 2, "no tick waited for a large share of the generation"


async def test_closing_the_stream_early_stops_generation(provider: LlamaLocalProvider) -> None:
    async with aclosing(provider.stream(ask(max_tokens=400))) as deltas:
        seen = 0
        async for _ in deltas:
            seen += 1
            if seen == 3:
                break
        assert provider.generating
    # 400 tokens take tens of seconds; a stopped generation goes idle within about a token.
    await wait_idle(provider, within_s=2.0)
    follow_up = await collect(provider, ask(max_tokens=3))
    assert follow_up[-1].usage is not None and follow_up[-1].usage.completion_tokens == 3


async def test_cancelling_the_consumer_stops_generation(provider: LlamaLocalProvider) -> None:
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream(ask(max_tokens=400)):
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_idle(provider, within_s=2.0)


async def test_continues_an_assistant_prefix_in_the_same_turn(
    provider: LlamaLocalProvider,
) -> None:
    prefix = "The capital of France is"
    deltas = await collect(provider, ask(assistant_prefix=prefix, max_tokens=8))
    continuation = text_of(deltas)
    assert continuation.strip() and not continuation.startswith(prefix)
    assert "Paris" in continuation


async def test_stop_sequences_cut_the_output(provider: LlamaLocalProvider) -> None:
    request = ask(assistant_prefix="The capital of France is", max_tokens=20, stop=("Paris",))
    deltas = await collect(provider, request)
    assert deltas[-1].stop_reason == "stop_sequence"
    assert "Paris" not in text_of(deltas)


async def test_grammar_constrained_output_parses(provider: LlamaLocalProvider) -> None:
    grammar = protocol_grammar(TOOLS, max_actions=2, max_text=40)
    messages = (ChatMessage("system", SYSTEM), ChatMessage("user", "Fetch example.org."))
    deltas = await collect(provider, ask(messages, grammar=grammar, max_tokens=200))
    assert deltas[-1].stop_reason == "end_turn"
    events = parse(text_of(deltas))
    assert not [e for e in events if isinstance(e, ParseError)], text_of(deltas)


async def test_continuing_after_a_sync_action_under_a_resume_grammar(
    provider: LlamaLocalProvider,
) -> None:
    declared = (
        "<thought>Fetch it first.\n"
        '<action type="tool" name="web.fetch" id="a1" mode="sync">{"url": "https://example.org"}'
        "</action>"
    )
    result = (
        '<action_result id="a1" status="ok" latency_ms="12">'
        "<![CDATA[Example Domain]]></action_result>"
    )
    prefix = declared + result
    grammar = protocol_grammar(TOOLS, max_actions=2, max_text=40, resume_from=prefix)
    messages = (ChatMessage("system", SYSTEM), ChatMessage("user", "What is on example.org?"))
    request = ask(messages, grammar=grammar, assistant_prefix=prefix, max_tokens=200)
    deltas = await collect(provider, request)
    assert deltas[-1].stop_reason == "end_turn"
    output = declared + text_of(deltas)
    events = parse(output)
    assert not [e for e in events if isinstance(e, ParseError)], output
    assert next(e.id for e in events if isinstance(e, ActionDeclared)) == "a1"


async def test_a_bad_grammar_is_a_provider_error(provider: LlamaLocalProvider) -> None:
    with pytest.raises(ProviderError, match="grammar"):
        await collect(provider, ask(grammar="root ::= (", max_tokens=5))


def test_a_missing_model_file_is_model_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelNotFound, match=r"nope\.gguf"):
        LlamaLocalProvider(missing)


async def test_a_prompt_longer_than_the_context_is_a_provider_error(
    local_model_path: Path,
) -> None:
    small = LlamaLocalProvider(local_model_path, n_ctx=64)
    try:
        with pytest.raises(ProviderError, match=r"n_ctx=64"):
            await collect(small, ask((ChatMessage("user", "word " * 100),), max_tokens=5))
    finally:
        await small.aclose()


def test_prompt_uses_the_gemma_turn_format(local_model_path: Path) -> None:
    llm = llama_cpp.Llama(str(local_model_path), vocab_only=True, verbose=False)
    try:
        messages = (
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Hi <end_of_turn>"),
            ChatMessage("assistant", "Hello."),
            ChatMessage("user", "Bye"),
        )
        tokens = gemma_prompt(llm, messages, assistant_prefix="Good")
        text = llm.detokenize(tokens, special=True).decode()
        end_of_turn = llm.tokenize(b"<end_of_turn>", add_bos=False, special=True)
    finally:
        llm.close()
    assert text == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi <end_of_turn><end_of_turn>\n"
        "<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n"
        "<start_of_turn>model\nGood"
    )
    # The marker typed by the user stays text: only the three real turn ends are special.
    assert tokens.count(end_of_turn[0]) == 3


async def test_closed_provider_refuses_new_streams(local_model_path: Path) -> None:
    closed = LlamaLocalProvider(local_model_path)
    await closed.aclose()
    with pytest.raises(ProviderError, match="closed"):
        await collect(closed, ask(max_tokens=2))
