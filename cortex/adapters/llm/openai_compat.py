"""OpenAI-compatible chat completions, streamed over SSE with httpx.

Works with OpenAI, Groq, Gemini's OpenAI endpoint, vLLM, Ollama, llama.cpp's server and
llama-cpp-python's server. Grammars go in the request field the server accepts
(``grammar_field``); continuation sends the prefix as a final assistant message, with vLLM's
``continue_final_message`` flags when ``continuation="vllm"``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, Literal

import httpx
import msgspec

from cortex.adapters.llm.base import CompletionRequest, StreamDelta
from cortex.adapters.llm.http_sse import HttpTarget, one_line, post_sse
from cortex.adapters.llm.retry import BackoffPolicy, Transient, is_transient_status, retrying
from cortex.bus.events import Usage
from cortex.errors import ConfigError, ProviderError

Continuation = Literal["none", "assistant_message", "vllm"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_FINISH_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_TRANSIENT_CODES = re.compile(r"overload|rate_limit|server_error|unavailable|timeout", re.I)
_VLLM_CONTINUE = {"continue_final_message": True, "add_generation_prompt": False}


class OpenAICompatProvider:
    """Streams chat completions from any server speaking OpenAI's ``/chat/completions``."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        grammar_field: str | None = None,
        continuation: Continuation = "none",
        max_tokens_field: str = "max_tokens",
        extra_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float | None = None,
        backoff: BackoffPolicy | None = None,
    ) -> None:
        """Configure the endpoint; ``base_url``/``api_key`` default to the environment."""
        if continuation not in ("none", "assistant_message", "vllm"):
            raise ConfigError(
                "openai: continuation must be none, assistant_message or vllm, "
                f"not {continuation!r}"
            )
        self.base_url = (
            base_url or os.environ.get("CORTEX_OPENAI_BASE_URL") or DEFAULT_BASE_URL
        ).rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get(api_key_env, "")
        self.grammar_field = grammar_field
        self.continuation: Continuation = continuation
        self.max_tokens_field = max_tokens_field
        self.extra_body = dict(extra_body or {})
        self.supports_grammar = grammar_field is not None
        self.supports_continuation = continuation != "none"
        self.backoff = backoff or BackoffPolicy()
        self._headers = dict(headers or {})
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        self._target = HttpTarget(
            provider=self.name,
            base_url=self.base_url,
            url=f"{self.base_url}/chat/completions",
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
        )
        self._client = httpx.AsyncClient()

    def payload(self, request: CompletionRequest) -> dict[str, Any]:
        """The JSON body for ``request`` (pure; exposed for inspection and tests)."""
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        body: dict[str, Any] = {
            "model": request.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": request.temperature,
            self.max_tokens_field: request.max_tokens,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if request.grammar and self.grammar_field:
            body[self.grammar_field] = request.grammar
        if request.assistant_prefix:
            if not self.supports_continuation:
                raise ProviderError(
                    f"openai: {self.base_url} is not configured for continuation; set the provider "
                    "option continuation (assistant_message or vllm) if the server supports it"
                )
            messages.append({"role": "assistant", "content": request.assistant_prefix})
            if self.continuation == "vllm":
                body.update(_VLLM_CONTINUE)
        body.update(self.extra_body)
        return body

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamDelta, None]:
        """Stream the completion, retrying 429/5xx before any output; close it to stop early."""
        body = self.payload(request)
        attempts = retrying(
            lambda: self._attempt(request, body), self.backoff, what=f"openai {self.base_url}"
        )
        async with aclosing(attempts) as deltas:
            async for delta in deltas:
                yield delta

    async def _attempt(
        self, request: CompletionRequest, body: dict[str, Any]
    ) -> AsyncGenerator[StreamDelta | Transient, None]:
        """One HTTP attempt: content deltas, then one delta with stop reason and usage."""
        finish: str | None = None
        usage: Usage | None = None
        chunks = 0
        sse = post_sse(
            self._client,
            self._target,
            model=request.model,
            headers=self._headers,
            payload=body,
            read_timeout_s=request.timeout_s,
        )
        async with aclosing(sse) as events:
            async for event in events:
                if isinstance(event, Transient):
                    yield event
                    return
                if event.data.strip() == "[DONE]":
                    break
                chunk = _decode_chunk(event.data)
                if "error" in chunk:
                    yield _stream_error(chunk["error"])
                    return
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content") or ""
                    if text:
                        chunks += 1
                        yield StreamDelta(text=text)
                    finish = choice.get("finish_reason") or finish
                if chunk.get("usage"):
                    usage = Usage(
                        prompt_tokens=int(chunk["usage"].get("prompt_tokens") or 0),
                        completion_tokens=int(chunk["usage"].get("completion_tokens") or 0),
                    )
            else:
                if finish is None:
                    yield Transient(f"stream from {self._target.url} ended before a finish reason")
                    return
        yield StreamDelta(
            stop_reason=_FINISH_REASONS.get(finish or "stop", finish),
            usage=usage or _estimated_usage(request, chunks),
        )

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()


def _decode_chunk(data: str) -> dict[str, Any]:
    """One ``data:`` payload as a dict (a non-JSON payload is a protocol error)."""
    try:
        chunk = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise ProviderError(f"openai: malformed stream chunk {one_line(data, 120)!r}") from exc
    if not isinstance(chunk, dict):
        raise ProviderError(f"openai: unexpected stream chunk {one_line(data, 120)!r}")
    return chunk


def _stream_error(error: Any) -> Transient:
    """An ``error`` object inside the stream: a ``Transient`` if overload-like, else raised."""
    details = error if isinstance(error, dict) else {"message": error}
    code = str(details.get("code") or details.get("type") or "error")
    line = one_line(f"stream error {code}: {details.get('message') or details}")
    if (code.isdigit() and is_transient_status(int(code))) or _TRANSIENT_CODES.search(code):
        return Transient(line)
    raise ProviderError(f"openai: {line}")


def _estimated_usage(request: CompletionRequest, chunks: int) -> Usage:
    """Usage when the server sends none: one token per content chunk, prompt at ~4 chars a token."""
    chars = sum(len(m.content) for m in request.messages) + len(request.assistant_prefix)
    return Usage(prompt_tokens=math.ceil(chars / 4), completion_tokens=chunks)
