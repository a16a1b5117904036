"""A tiny server-sent-events parser (the subset LLM APIs use), shared by the HTTP providers."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable

import msgspec


class SSEEvent(msgspec.Struct, frozen=True):
    """One dispatched event: its ``event:`` name ("message" when absent) and joined ``data:``."""

    event: str
    data: str


class SSEParser:
    """Feed lines (without their line ending); a blank line dispatches the pending event."""

    def __init__(self) -> None:
        """Start with no pending event."""
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> SSEEvent | None:
        """Take one line; return the event it completes, if any."""
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        return None

    def flush(self) -> SSEEvent | None:
        """Dispatch the pending event (at a blank line or the end of the stream)."""
        if not self._data:
            self._event = ""
            return None
        event = SSEEvent(self._event or "message", "\n".join(self._data))
        self._event, self._data = "", []
        return event


async def aiter_sse(lines: AsyncIterable[str]) -> AsyncGenerator[SSEEvent, None]:
    """Turn a stream of lines into SSE events (a trailing event without a blank line counts)."""
    parser = SSEParser()
    async for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event
    last = parser.flush()
    if last is not None:
        yield last
