"""The OpenAI-compatible provider: the happy path against the real llama-cpp-python server, error
paths (401/404/429/5xx, dropped streams, no server) against a small real aiohttp server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from cortex.adapters.llm.base import CompletionRequest, StreamDelta
from cortex.adapters.llm.openai_compat import OpenAICompatProvider
from cortex.adapters.llm.registry import make_provider
from cortex.adapters.llm.retry import BackoffPolicy
from cortex.bus.events import ChatMessage
from cortex.errors import (
    EndpointUnreachable,
    ModelNotFound,
    ProviderAuthError,
    ProviderError,
    RateLimited,
)
from tests.llm.http_servers import Recorder, free_port, json_error, send_event, serve, start_sse

FAST = BackoffPolicy(max_attempts=3, base_s=0.01, cap_s=0.05)
YES_NO = 'root ::= "yes" | "no"'
ENDLESS = 'root ::= ("la "){300}'


def ask(user: str, **fields: Any) -> CompletionRequest:
    """A one-message request."""
    return CompletionRequest(
        model=fields.pop("model", "local"),
        messages=(ChatMessage("user", user),),
        timeout_s=60.0,
        **fields,
    )


async def collect(provider: OpenAICompatProvider, request: CompletionRequest) -> list[StreamDelta]:
    """Every delta of one stream."""
    return [delta async for delta in provider.stream(request)]


def text_of(deltas: list[StreamDelta]) -> str:
    """The streamed text."""
    return "".join(d.text for d in deltas)


# ---- the real llama-cpp-python server ------------------------------------------------------


@pytest.fixture
async def llama(llama_server: str) -> AsyncIterator[OpenAICompatProvider]:
    """The provider pointed at the real server, which takes GBNF in its ``grammar`` field."""
    provider = OpenAICompatProvider(base_url=llama_server, api_key="", grammar_field="grammar")
    try:
        yield provider
    finally:
        await provider.aclose()


async def test_streams_text_with_usage_from_the_real_server(llama: OpenAICompatProvider) -> None:
    deltas = await collect(llama, ask("Write a short poem about the sea.", max_tokens=24))
    *texts, final = deltas
    assert len(texts) >= 2 and all(d.text for d in texts)
    assert final.text == "" and final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage is not None
    assert final.usage.prompt_tokens > 0
    assert 1 <= final.usage.completion_tokens <= 24


async def test_grammar_is_passed_through(llama: OpenAICompatProvider) -> None:
    deltas = await collect(
        llama, ask("Is the sky blue? Answer yes or no.", grammar=YES_NO, max_tokens=8)
    )
    assert text_of(deltas) in ("yes", "no")
    assert deltas[-1].stop_reason == "end_turn"


async def test_max_tokens_is_honoured(llama: OpenAICompatProvider) -> None:
    deltas = await collect(llama, ask("Sing.", grammar=ENDLESS, max_tokens=8))
    assert text_of(deltas).startswith("la la")
    assert deltas[-1].stop_reason == "max_tokens"
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens <= 8


def server_cpu_clock(base_url: str) -> Callable[[], float]:
    """A clock of the CPU seconds used by the llama_cpp.server process serving ``base_url``."""
    port = str(urlsplit(base_url).port).encode()
    stat: Path | None = None
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0") if proc.name.isdigit() else []
        except OSError:
            continue
        if any(b"llama_cpp.server" in a for a in args) and (
            port in args or b"--port=" + port in args
        ):
            stat = proc / "stat"
    if stat is None:
        pytest.fail(f"no llama_cpp.server process serves {base_url}")
    ticks = os.sysconf("SC_CLK_TCK")

    def clock(path: Path = stat) -> float:
        fields = path.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    return clock


async def cpu_share(clock: Callable[[], float], window_s: float) -> float:
    """The share of one core the process used over the next ``window_s`` seconds."""
    before = clock()
    await asyncio.sleep(window_s)
    return (clock() - before) / window_s


async def test_early_close_stops_generation_on_the_server(
    llama: OpenAICompatProvider, llama_server: str
) -> None:
    # 300 forced "la " keep the server generating for many seconds unless the stream is closed.
    clock = server_cpu_clock(llama_server)
    async with aclosing(llama.stream(ask("Sing.", grammar=ENDLESS, max_tokens=600))) as deltas:
        seen = 0
        async for _ in deltas:
            seen += 1
            if seen == 3:
                break
        assert await cpu_share(clock, 0.5) > 0.2  # generating while the stream is open
    async with asyncio.timeout(5):
        while await cpu_share(clock, 0.3) > 0.1:
            pass


# ---- error paths against a local aiohttp server ----------------------------------------------


async def chunk(
    response: web.StreamResponse, content: str | None = None, finish: str | None = None
) -> None:
    """One chat.completion.chunk."""
    delta = {} if content is None else {"content": content}
    await send_event(
        response,
        {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        },
    )


async def good_stream(request: web.Request) -> web.StreamResponse:
    """A short, complete stream with a usage chunk and [DONE]."""
    response = await start_sse(request)
    await chunk(response, "Hi")
    await chunk(response, " there")
    await chunk(response, finish="stop")
    await send_event(
        response, {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}
    )
    await send_event(response, "[DONE]")
    return response


@pytest.fixture
async def fake(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[OpenAICompatProvider, Recorder]]:
    """A local server running the indirectly-given handler, and a provider pointed at it."""
    async with serve("/v1/chat/completions", request.param) as (root, recorder):
        provider = OpenAICompatProvider(base_url=f"{root}/v1", api_key="sk-test", backoff=FAST)
        try:
            yield provider, recorder
        finally:
            await provider.aclose()


async def fails_then_streams(request: web.Request, recorder: Recorder) -> web.StreamResponse:
    """500, then 429 with Retry-After, then a good stream."""
    if len(recorder.requests) == 1:
        return json_error(500, {"error": {"message": "boom", "type": "server_error"}})
    if len(recorder.requests) == 2:
        return json_error(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"})
    return await good_stream(request)


@pytest.mark.parametrize("fake", [fails_then_streams], indirect=True)
async def test_retries_5xx_and_429_then_streams(
    fake: tuple[OpenAICompatProvider, Recorder],
) -> None:
    provider, recorder = fake
    deltas = await collect(provider, ask("hi", model="gpt-test", stop=("\n\n",)))
    assert text_of(deltas) == "Hi there"
    assert deltas[-1].stop_reason == "end_turn"
    assert deltas[-1].usage is not None
    assert (deltas[-1].usage.prompt_tokens, deltas[-1].usage.completion_tokens) == (7, 2)
    _, second, third = recorder.requests
    assert third.at - second.at >= 1.0  # Retry-After honoured; the backoff alone is <= 0.01 s
    assert third.headers["Authorization"] == "Bearer sk-test"
    assert third.body["stream"] is True
    assert third.body["stream_options"] == {"include_usage": True}
    assert third.body["stop"] == ["\n\n"]
    assert "grammar" not in third.body


async def always_unavailable(request: web.Request, recorder: Recorder) -> web.StreamResponse:
    """503 forever."""
    return json_error(503, {"error": {"message": "overloaded"}})


@pytest.mark.parametrize("fake", [always_unavailable], indirect=True)
async def test_gives_up_with_rate_limited(fake: tuple[OpenAICompatProvider, Recorder]) -> None:
    provider, recorder = fake
    with pytest.raises(RateLimited, match="HTTP 503: overloaded; gave up after 3 attempts"):
        await collect(provider, ask("hi"))
    assert len(recorder.requests) == FAST.max_attempts


async def bad_key(request: web.Request, recorder: Recorder) -> web.StreamResponse:
    """401 as OpenAI answers it."""
    return json_error(
        401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}
    )


@pytest.mark.parametrize("fake", [bad_key], indirect=True)
async def test_bad_key_is_one_clear_line(fake: tuple[OpenAICompatProvider, Recorder]) -> None:
    provider, recorder = fake
    with pytest.raises(ProviderAuthError) as caught:
        await collect(provider, ask("hi"))
    assert "\n" not in str(caught.value)
    assert f"bad or missing API key for {provider.base_url}" in str(caught.value)
    assert len(recorder.requests) == 1


async def no_such_model(request: web.Request, recorder: Recorder) -> web.StreamResponse:
    """404 for one model name, a 400 model_not_found body for another."""
    body = await request.json()
    error = {
        "error": {
            "message": f"The model `{body['model']}` does not exist",
            "code": "model_not_found",
        }
    }
    return json_error(404 if body["model"] == "gpt-404" else 400, error)


@pytest.mark.parametrize("fake", [no_such_model], indirect=True)
@pytest.mark.parametrize("model", ["gpt-404", "gpt-400"])
async def test_unknown_model_is_model_not_found(
    fake: tuple[OpenAICompatProvider, Recorder], model: str
) -> None:
    provider, _ = fake
    with pytest.raises(ModelNotFound, match=f"model '{model}' not found .*does not exist"):
        await collect(provider, ask("hi", model=model))


async def other_client_error(request: web.Request, recorder: Recorder) -> web.StreamResponse:
    """A 400 that is not about the model."""
    return json_error(400, {"error": {"message": "temperature must be <= 2"}})


@pytest.mark.parametrize("fake", [other_client_error], indirect=True)
async def test_other_client_errors_are_not_retried(
    fake: tuple[OpenAICompatProvider, Recorder],
) -> None:
    provider, recorder = fake
    with pytest.raises(
        ProviderError, match=r"rejected the request .*HTTP 400: temperature must be <= 2"
    ):
        await collect(provider, ask("hi"))
    assert len(recorder.requests) == 1


async def dies_mid_stream(request: web.Request, recorder: Recorder) -> web.StreamResponse:
    """Some text, then the connection is dropped."""
    response = await start_sse(request)
    await chunk(response, "Hal")
    assert request.transport is not None
    request.transport.close()
    return response


@pytest.mark.parametrize("fake", [dies_mid_stream], indirect=True)
async def test_dropped_stream_after_output_is_an_error(
    fake: tuple[OpenAICompatProvider, Recorder],
) -> None:
    provider, recorder = fake
    with pytest.raises(ProviderError, match="failed mid-stream") as caught:
        await collect(provider, ask("hi"))
    assert not isinstance(caught.value, RateLimited)
    assert len(recorder.requests) == 1


async def error_chunk(request: web.Request, recorder: Recorder) -> web.StreamResponse:
    """An error object inside the stream, as some servers send it."""
    response = await start_sse(request)
    await send_event(
        response,
        {"error": {"message": "context length exceeded", "code": "context_length_exceeded"}},
    )
    return response


@pytest.mark.parametrize("fake", [error_chunk], indirect=True)
async def test_error_chunk_is_a_provider_error(fake: tuple[OpenAICompatProvider, Recorder]) -> None:
    provider, recorder = fake
    with pytest.raises(ProviderError, match="context_length_exceeded: context length exceeded"):
        await collect(provider, ask("hi"))
    assert len(recorder.requests) == 1


async def test_unreachable_endpoint_names_the_url() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    provider = OpenAICompatProvider(base_url=base_url, backoff=FAST)
    try:
        with pytest.raises(EndpointUnreachable, match=f"cannot reach {base_url}/chat/completions"):
            await collect(provider, ask("hi"))
    finally:
        await provider.aclose()


# ---- request bodies ---------------------------------------------------------------------------


async def test_grammar_and_vllm_continuation_fields() -> None:
    provider = make_provider("vllm", "m", {"base_url": "http://vllm:8000/v1"})
    try:
        assert isinstance(provider, OpenAICompatProvider)
        assert provider.supports_grammar and provider.supports_continuation
        body = provider.payload(ask("hi", grammar=YES_NO, assistant_prefix="<thought>"))
        assert body["guided_grammar"] == YES_NO
        assert body["messages"][-1] == {"role": "assistant", "content": "<thought>"}
        assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    finally:
        await provider.aclose()


async def test_plain_openai_refuses_continuation_and_ignores_grammar() -> None:
    provider = OpenAICompatProvider(base_url="https://api.openai.com/v1", api_key="sk")
    try:
        assert not provider.supports_continuation and not provider.supports_grammar
        assert "grammar" not in provider.payload(ask("hi", grammar=YES_NO))
        with pytest.raises(ProviderError, match="not configured for continuation"):
            provider.payload(ask("hi", assistant_prefix="<thought>"))
    finally:
        await provider.aclose()
