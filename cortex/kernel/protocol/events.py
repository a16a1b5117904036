"""The events the protocol parser yields (immutable msgspec structs, a tagged union).

Text deltas hold only a string and a flag, so they cannot be part of a reference cycle:
``gc=False`` spares the garbage collector from tracking the most frequent events.
"""

from __future__ import annotations

from typing import Any

import msgspec


class _ParserEvent(msgspec.Struct, frozen=True, tag_field="event"):
    """Base of every parser event; the ``event`` tag names the kind when encoded."""


class ThoughtDelta(_ParserEvent, tag="thought_delta", gc=False):
    """A piece of text inside ``<thought>`` (entities decoded), streamed as it arrives."""

    text: str


class ResponseDelta(_ParserEvent, tag="response_delta", gc=False):
    """A piece of text inside ``<response>``; ``final`` is the element's ``final`` attribute."""

    text: str
    final: bool


class ActionDeclared(_ParserEvent, tag="action_declared", kw_only=True):
    """A complete ``<action>``: returned by the ``feed()`` call that delivered its closing tag."""

    id: str
    type: str
    name: str
    mode: str = "async"
    depends_on: tuple[str, ...] = ()
    params: Any = None
    refs: tuple[str, ...] = ()
    raw: str = ""
    body: str = ""
    position: int = 0
    end: int = 0
    parent: str | None = None
    output_key: str | None = None
    timeout: float | None = None
    retry: int | None = None
    attributes: dict[str, str] = msgspec.field(default_factory=dict)


class ActionResult(_ParserEvent, tag="action_result", kw_only=True):
    """An ``<action_result>`` block (written by the runtime, seen when re-parsing a context)."""

    id: str
    status: str
    latency_ms: float | None = None
    body: str = ""
    position: int = 0
    attributes: dict[str, str] = msgspec.field(default_factory=dict)


class ContextBlock(_ParserEvent, tag="context_block", kw_only=True):
    """A ``<context feed="...">`` block (written by the runtime into the prompt)."""

    feed: str
    body: str = ""
    position: int = 0
    attributes: dict[str, str] = msgspec.field(default_factory=dict)


class ParseError(_ParserEvent, tag="parse_error", kw_only=True):
    """Malformed output, recoverable: parsing goes on after it (see docs/protocol.md for codes)."""

    code: str
    message: str
    action_id: str | None = None
    offset: int = 0
    snippet: str = ""


Event = ThoughtDelta | ResponseDelta | ActionDeclared | ActionResult | ContextBlock | ParseError
"""Any event the parser yields."""

EVENT_TYPES: tuple[type[_ParserEvent], ...] = (
    ThoughtDelta,
    ResponseDelta,
    ActionDeclared,
    ActionResult,
    ContextBlock,
    ParseError,
)
"""Every concrete event class, for isinstance checks."""
