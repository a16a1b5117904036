"""Anthropic's Messages API, streamed over SSE with httpx.

System messages become the top-level ``system``; an assistant prefix is sent as a final
assistant message, which Anthropic continues natively (prefill), so continuation is supported.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import httpx
import msgspec

from cortex.adapters.llm.base import CompletionRequest, StreamDelta
from cortex.adapters.llm.http_sse import HttpTarget, one_line, post_sse
from cortex.adapters.llm.retry import BackoffPolicy, Transient, retrying
from cortex.bus.events import Usage
from cortex.errors import ProviderError

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
_TRANSIENT_ERRORS = frozenset(
    {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}
)


class AnthropicProvider:
    """Streams completions from Anthropic's ``/v1/messages``."""

    name = "anthropic"
    supports_continuation = True
    supports_grammar = False

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "ANTHROPIC_API_KEY",
        version: str = API_VERSION,
        extra_body: dict[str, Any] | None = None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float | None = None,
        backoff: BackoffPolicy | None = None,
    ) -> None:
        """Configure the endpoint; ``base_url``/``api_key`` default to the environment."""
        self.base_url = (
            base_url or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL
        ).rstrip("/")
        key = api_key if api_key is not None else os.environ.get(api_key_env, "")
        self._headers = {"x-api-key": key, "anthropic-version": version}
        self.extra_body = dict(extra_body or {})
        self.backoff = backoff or BackoffPolicy()
        self._target = HttpTarget(
            provider=self.name,
            base_url=self.base_url,
            url=f"{self.base_url}/v1/messages",
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
        )
        self._client = httpx.AsyncClient()

    def payload(self, request: CompletionRequest) -> dict[str, Any]:
        """The JSON body for ``request`` (pure; exposed for inspection and tests)."""
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        turns: list[tuple[str, str]] = [
            (m.role, m.content) for m in request.messages if m.role != "system"
        ]
        prefix = request.assistant_prefix.rstrip()
        if prefix:
            turns.append(("assistant", prefix))
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": _merge_turns(turns),
            "temperature": request.temperature,
            "stream": True,
        }
        if system:
            body["system"] = system
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        body.update(self.extra_body)
        return body

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamDelta, None]:
        """Stream the completion, retrying 429/5xx/overloaded before any output."""
        body = self.payload(request)
        attempts = retrying(
            lambda: self._attempt(request, body), self.backoff, what=f"anthropic {self.base_url}"
        )
        async with aclosing(attempts) as deltas:
            async for delta in deltas:
                yield delta

    async def _attempt(
        self, request: CompletionRequest, body: dict[str, Any]
    ) -> AsyncGenerator[StreamDelta | Transient, None]:
        """One HTTP attempt: text deltas, then one delta with stop reason and usage."""
        # Anthropic rejects a prefill ending in whitespace; the prefix was sent stripped, and the
        # caller already holds that whitespace, so leading whitespace of the reply is dropped.
        trim = request.assistant_prefix != request.assistant_prefix.rstrip()
        input_tokens = output_tokens = 0
        stop_reason: str | None = None
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
                data = _decode_event(event.data)
                kind = data.get("type") or event.event
                if kind == "message_start":
                    usage = (data.get("message") or {}).get("usage") or {}
                    input_tokens = int(usage.get("input_tokens") or 0)
                    output_tokens = int(usage.get("output_tokens") or 0)
                elif kind == "content_block_delta":
                    delta = data.get("delta") or {}
                    text = (delta.get("text") or "") if delta.get("type") == "text_delta" else ""
                    if trim and text:
                        text, trim = text.lstrip(), not text.strip()
                    if text:
                        yield StreamDelta(text=text)
                elif kind == "message_delta":
                    stop_reason = (data.get("delta") or {}).get("stop_reason") or stop_reason
                    usage = data.get("usage") or {}
                    input_tokens = int(usage.get("input_tokens") or input_tokens)
                    output_tokens = int(usage.get("output_tokens") or output_tokens)
                elif kind == "message_stop":
                    yield StreamDelta(
                        stop_reason=stop_reason or "end_turn",
                        usage=Usage(prompt_tokens=input_tokens, completion_tokens=output_tokens),
                    )
                    return
                elif kind == "error":
                    yield _stream_error(data.get("error") or {})
                    return
        yield Transient(f"stream from {self._target.url} ended before message_stop")

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()


def _merge_turns(turns: list[tuple[str, str]]) -> list[dict[str, str]]:
    """Messages with consecutive same-role turns joined, as the API wants them alternating."""
    merged: list[dict[str, str]] = []
    for role, content in turns:
        if merged and merged[-1]["role"] == role:
            merged[-1]["content"] += "\n\n" + content
        else:
            merged.append({"role": role, "content": content})
    return merged


def _decode_event(data: str) -> dict[str, Any]:
    """One event's JSON payload as a dict (anything else is a protocol error)."""
    try:
        decoded = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise ProviderError(f"anthropic: malformed stream event {one_line(data, 120)!r}") from exc
    if not isinstance(decoded, dict):
        raise ProviderError(f"anthropic: unexpected stream event {one_line(data, 120)!r}")
    return decoded


def _stream_error(error: dict[str, Any]) -> Transient:
    """An ``error`` event: overloaded/api errors are retried before output, others raised."""
    kind = str(error.get("type") or "error")
    line = one_line(f"stream error {kind}: {error.get('message') or ''}")
    if kind in _TRANSIENT_ERRORS:
        return Transient(line)
    raise ProviderError(f"anthropic: {line}")
