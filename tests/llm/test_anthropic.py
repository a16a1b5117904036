"""The Anthropic provider against a real local server streaming Anthropic's SSE event format."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest
from aiohttp import web

from cortex.adapters.llm.anthropic import AnthropicProvider
from cortex.adapters.llm.base import CompletionRequest, StreamDelta
from cortex.adapters.llm.retry import BackoffPolicy
from cortex.bus.events import ChatMessage, Usage
from cortex.errors import (
    EndpointUnreachable,
    ModelNotFound,
    ProviderAuthError,
    ProviderError,
    RateLimited,
)
from tests.llm.http_servers import (
    Handler,
    Recorder,
    free_port,
    json_error,
    send_event,
    serve,
    start_sse,
)

FAST = BackoffPolicy(max_attempts=3, base_s=0.01, cap_s=0.05)
PIECES = ["Hello", ",", " world", "!"]


def request(**overrides: Any) -> CompletionRequest:
    """A small request with a system prompt and one user message."""
    fields: dict[str, Any] = {
        "model": "claude-test",
        "messages": (ChatMessage("system", "Be brief."), ChatMessage("user", "Say hello.")),
        "max_tokens": 64,
        "timeout_s": 10.0,
    }
    return CompletionRequest(**{**fields, **overrides})


async def collect(provider: AnthropicProvider, req: CompletionRequest) -> list[StreamDelta]:
    """Every delta of one stream."""
    return [delta async for delta in provider.stream(req)]


async def message_head(response: web.StreamResponse, input_tokens: int = 25) -> None:
    """message_start, content_block_start and a ping, as Anthropic sends them."""
    await send_event(
        response,
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-test",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1},
            },
        },
        "message_start",
    )
    await send_event(
        response,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        "content_block_start",
    )
    await send_event(response, {"type": "ping"}, "ping")


async def text_delta(response: web.StreamResponse, text: str) -> None:
    """One content_block_delta with a text_delta."""
    await send_event(
        response,
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        "content_block_delta",
    )


async def message_tail(response: web.StreamResponse, stop_reason: str, output_tokens: int) -> None:
    """content_block_stop, message_delta (stop reason, usage) and message_stop."""
    await send_event(response, {"type": "content_block_stop", "index": 0}, "content_block_stop")
    await send_event(
        response,
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
        "message_delta",
    )
    await send_event(response, {"type": "message_stop"}, "message_stop")


async def full_message(
    request: web.Request, pieces: list[str], stop_reason: str = "end_turn"
) -> web.StreamResponse:
    """A complete, successful streamed message."""
    response = await start_sse(request)
    await message_head(response)
    for piece in pieces:
        await text_delta(response, piece)
    await message_tail(response, stop_reason, output_tokens=15)
    return response


async def error_event(response: web.StreamResponse, kind: str, message: str) -> None:
    """An ``error`` event in the stream."""
    await send_event(
        response, {"type": "error", "error": {"type": kind, "message": message}}, "error"
    )


def provider_for(base_url: str, **kwargs: Any) -> AnthropicProvider:
    """A provider pointed at the local server with fast retries."""
    return AnthropicProvider(base_url=base_url, api_key="test-key", backoff=FAST, **kwargs)


@pytest.fixture
async def server(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[AnthropicProvider, Recorder]]:
    """A local Anthropic-format server running the handler given by indirect parametrisation."""
    handler: Handler = request.param
    async with serve("/v1/messages", handler) as (base_url, recorder):
        provider = provider_for(base_url)
        try:
            yield provider, recorder
        finally:
            await provider.aclose()


async def normal(request: web.Request, recorder: Recorder) -> web.StreamResponse:
    """Always a full message."""
    return await full_message(request, PIECES)


@pytest.mark.parametrize("server", [normal], indirect=True)
async def test_streams_text_usage_and_stop_reason(
    server: tuple[AnthropicProvider, Recorder],
) -> None:
    provider, recorder = server
    deltas = await collect(provider, request(stop=("END",)))
    assert "".join(d.text for d in deltas) == "".join(PIECES)
    assert [d.text for d in deltas[:-1]] == PIECES
    assert deltas[-1].stop_reason == "end_turn"
    assert deltas[-1].usage == Usage(prompt_tokens=25, completion_tokens=15)
    seen = recorder.requests[0]
    assert seen.headers["x-api-key"] == "test-key"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.body["system"] == "Be brief."
    assert seen.body["messages"] == [{"role": "user", "content": "Say hello."}]
    assert seen.body["stream"] is True
    assert seen.body["max_tokens"] == 64
    assert seen.body["stop_sequences"] == ["END"]


async def truncated(request: web.Request, recorder: Recorder) -> web.StreamResponse:
    """A message cut by max_tokens."""
    return await full_message(request, ["Hel"], stop_reason="max_tokens")


@pytest.mark.parametrize("server", [truncated], indirect=True)
async def test_reports_max_tokens_stop_reason(server: tuple[AnthropicProvider, Recorder]) -> None:
    provider, _ = server
    deltas = await collect(provider, request(max_tokens=1))
    assert deltas[-1].stop_reason == "max_tokens"


async def echo_prefix_continuation(request: web.Request, recorder: Recorder) -> web.StreamResponse:
    """Continue a prefilled assistant turn, starting with a space as the real API does."""
    return await full_message(request, [" 42", "."])


@pytest.mark.parametrize("server", [echo_prefix_continuation], indirect=True)
async def test_continuation_sends_prefill_and_trims_whitespace(
    server: tuple[AnthropicProvider, Recorder],
) -> None:
    provider, recorder = server
    deltas = await collect(provider, request(assistant_prefix="The answer is "))
    assert recorder.requests[0].body["messages"][-1] == {
        "role": "assistant",
        "content": "The answer is",
    }
    assert "".join(d.text for d in deltas) == "42."


async def invalid_mid_stream(request: web.Request, recorder: Recorder) -> web.StreamResponse:
    """An invalid_request_error event after the head."""
    response = await start_sse(request)
    await message_head(response)
    await error_event(response, "invalid_request_error", "prompt is too long")
    return response


@pytest.mark.parametrize("server", [invalid_mid_stream], indirect=True)
async def test_error_event_is_one_clear_provider_error(
    server: tuple[AnthropicProvider, Recorder],
) -> None:
    provider, recorder = server
    with pytest.raises(ProviderError, match="invalid_request_error: prompt is too long") as caught:
        await collect(provider, request())
    assert "\n" not in str(caught.value)
    assert len(recorder.requests) == 1


async def overloaded_after_text(request: web.Request, recorder: Recorder) -> web.StreamResponse:
    """Text, then an overloaded error: too late to retry."""
    response = await start_sse(request)
    await message_head(response)
    await text_delta(response, "Partial")
    await error_event(response, "overloaded_error", "Overloaded")
    return response


@pytest.mark.parametrize("server", [overloaded_after_text], indirect=True)
async def test_overloaded_after_output_is_not_retried(
    server: tuple[AnthropicProvider, Recorder],
) -> None:
    provider, recorder = server
    texts: list[str] = []
    with pytest.raises(ProviderError, match=r"mid-stream.*overloaded_error") as caught:
        async for delta in provider.stream(request()):
            texts.append(delta.text)
    assert not isinstance(caught.value, RateLimited)
    assert texts == ["Partial"]
    assert len(recorder.requests) == 1


async def overloaded_then_ok(request: web.Request, recorder: Recorder) -> web.StreamResponse:
    """The first attempt gets an overloaded event before any text; the next succeeds."""
    if len(recorder.requests) == 1:
        response = await start_sse(request)
        await message_head(response)
        await error_event(response, "overloaded_error", "Overloaded")
        return response
    return await full_message(request, PIECES)


@pytest.mark.parametrize("server", [overloaded_then_ok], indirect=True)
async def test_overloaded_event_before_output_is_retried(
    server: tuple[AnthropicProvider, Recorder],
) -> None:
    provider, recorder = server
    deltas = await collect(provider, request())
    assert "".join(d.text for d in deltas) == "".join(PIECES)
    assert len(recorder.requests) == 2


async def limited_then_ok(request: web.Request, recorder: Recorder) -> web.StreamResponse:
    """429 with Retry-After: 1, then 529 (overloaded), then success."""
    if len(recorder.requests) == 1:
        return json_error(
            429,
            {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
            {"retry-after": "1"},
        )
    if len(recorder.requests) == 2:
        return json_error(
            529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        )
    return await full_message(request, PIECES)


@pytest.mark.parametrize("server", [limited_then_ok], indirect=True)
async def test_429_honours_retry_after_then_succeeds(
    server: tuple[AnthropicProvider, Recorder],
) -> None:
    provider, recorder = server
    deltas = await collect(provider, request())
    assert "".join(d.text for d in deltas) == "".join(PIECES)
    first, second, _ = recorder.requests
    assert second.at - first.at >= 1.0  # the backoff alone would wait at most 0.01 s


async def always_busy(request: web.Request, recorder: Recorder) -> web.StreamResponse:
    """503 forever."""
    return json_error(503, {"type": "error", "error": {"type": "api_error", "message": "busy"}})


@pytest.mark.parametrize("server", [always_busy], indirect=True)
async def test_gives_up_with_rate_limited_after_max_attempts(
    server: tuple[AnthropicProvider, Recorder],
) -> None:
    provider, recorder = server
    with pytest.raises(RateLimited, match="HTTP 503: busy; gave up after 3 attempts"):
        await collect(provider, request())
    assert len(recorder.requests) == FAST.max_attempts


async def unauthorised(request: web.Request, recorder: Recorder) -> web.StreamResponse:
    """401 as Anthropic answers a bad key."""
    return json_error(
        401,
        {
            "type": "error",
            "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        },
    )


@pytest.mark.parametrize("server", [unauthorised], indirect=True)
async def test_bad_key_is_one_clear_line(server: tuple[AnthropicProvider, Recorder]) -> None:
    provider, recorder = server
    with pytest.raises(ProviderAuthError) as caught:
        await collect(provider, request())
    message = str(caught.value)
    assert "\n" not in message
    assert f"bad or missing API key for {provider.base_url}" in message
    assert "invalid x-api-key" in message
    assert len(recorder.requests) == 1


async def unknown_model(request: web.Request, recorder: Recorder) -> web.StreamResponse:
    """404 as Anthropic answers an unknown model."""
    return json_error(
        404,
        {"type": "error", "error": {"type": "not_found_error", "message": "model: claude-nope"}},
    )


@pytest.mark.parametrize("server", [unknown_model], indirect=True)
async def test_unknown_model_is_model_not_found(server: tuple[AnthropicProvider, Recorder]) -> None:
    provider, _ = server
    with pytest.raises(ModelNotFound, match="model 'claude-nope' not found"):
        await collect(provider, request(model="claude-nope"))


async def test_unreachable_endpoint_names_the_url() -> None:
    base_url = f"http://127.0.0.1:{free_port()}"
    provider = provider_for(base_url)
    try:
        with pytest.raises(EndpointUnreachable, match=f"cannot reach {base_url}/v1/messages"):
            await collect(provider, request())
    finally:
        await provider.aclose()


async def endless(request: web.Request, recorder: Recorder) -> web.StreamResponse:
    """Stream text until the client goes away, and record that it did."""
    response = await start_sse(request)
    try:
        await message_head(response)
        for n in range(10_000):
            await text_delta(response, f"t{n} ")
            await asyncio.sleep(0.01)
    except (ConnectionResetError, asyncio.CancelledError):
        recorder.disconnected.set()
        raise
    return response


@pytest.mark.parametrize("server", [endless], indirect=True)
async def test_early_close_disconnects_from_the_server(
    server: tuple[AnthropicProvider, Recorder],
) -> None:
    provider, recorder = server
    async with aclosing(provider.stream(request())) as deltas:
        texts: list[str] = []
        async for delta in deltas:
            texts.append(delta.text)
            if len(texts) == 3:
                break
    assert texts == ["t0 ", "t1 ", "t2 "]
    await asyncio.wait_for(recorder.disconnected.wait(), timeout=5)
