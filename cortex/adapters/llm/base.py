"""The provider interface every LLM adapter implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

import msgspec

from cortex.bus.events import ChatMessage, Usage


class CompletionRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One streaming completion: the chat so far, and optionally an assistant prefix to continue."""

    model: str
    messages: tuple[ChatMessage, ...]
    max_tokens: int = 1024
    temperature: float = 0.0
    grammar: str | None = None
    assistant_prefix: str = ""
    stop: tuple[str, ...] = ()
    timeout_s: float = 120.0


class StreamDelta(msgspec.Struct, frozen=True, kw_only=True):
    """A piece of streamed output; the last one carries the stop reason and usage."""

    text: str = ""
    stop_reason: str | None = None
    usage: Usage | None = None


@runtime_checkable
class Provider(Protocol):
    """A streaming LLM backend."""

    name: str
    supports_continuation: bool
    supports_grammar: bool

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamDelta]:
        """Stream the completion; closing the iterator early stops generation."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads and models."""
        ...
