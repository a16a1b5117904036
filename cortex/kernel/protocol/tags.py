"""Reading one tag at a ``<`` in text: known opening tag, closing tag, plain text, or wait."""

from __future__ import annotations

import re
from typing import NamedTuple

from cortex.kernel.protocol.attributes import PLAIN_ATTRIBUTES
from cortex.kernel.protocol.markup import (
    CLOSE_TAIL,
    CLOSE_TAIL_PARTIAL,
    MAX_PREFIX,
    NAMES_PATTERN,
    TAG_INSIDE,
    TAG_PREFIXES,
    TAG_START,
)


class TagKind:
    """What a ``<`` in text turned out to be (plain constants, not an Enum: reading an Enum
    member off its class is a slow descriptor lookup in Python 3.11, and hot code does)."""

    WAIT = "wait"
    """Too little input to tell yet."""
    TEXT = "text"
    """Not a protocol tag: the ``<`` is text."""
    OPEN = "open"
    CLOSE = "close"
    BAD = "bad"
    """A known opening tag that cannot be read; ``end`` is where the damage stops."""
    INCOMPLETE = "incomplete"
    """The input ended inside a known opening tag."""


class Tag(NamedTuple):
    """A tag read at some ``<``: kind, element name, attribute text and where it ends."""

    kind: str
    """A ``TagKind`` constant."""
    name: str = ""
    inside: str = ""
    self_closing: bool = False
    end: int = 0
    reason: str = ""
    plain: bool = False
    """The attributes are plain ``name="value"`` pairs (see ``attributes.parse_attributes``)."""


WAIT = Tag(TagKind.WAIT)
WAIT_OPEN = Tag(TagKind.WAIT, reason="an opening tag waits for its '>'")
"""A known opening tag whose ``>`` has not arrived: only a ``>`` or ``<`` can change that."""
TEXT = Tag(TagKind.TEXT)


_PLAIN_OPEN = re.compile(rf"<({NAMES_PATTERN})({PLAIN_ATTRIBUTES})(/?)>")
"""A whole opening tag with plain ``name="value"`` attributes: the usual case, read at once."""


def read_tag(buf: str, i: int, final: bool, max_pending: int) -> Tag:
    """Read the tag starting at ``buf[i] == '<'``; ``final`` means no more input will come."""
    m = _PLAIN_OPEN.match(buf, i, i + max_pending)
    if m is not None:
        name, inside, slash = m.groups()
        return Tag(TagKind.OPEN, name, inside, slash == "/", m.end(), plain=True)
    m = TAG_START.match(buf, i)
    if m is None:
        if not final and len(buf) - i <= MAX_PREFIX and buf[i:] in TAG_PREFIXES:
            return WAIT
        return TEXT
    slash, name = m.groups()
    j = m.end()
    if slash:
        cm = CLOSE_TAIL.match(buf, j)
        if cm:
            return Tag(TagKind.CLOSE, name, end=cm.end())
        if not final and CLOSE_TAIL_PARTIAL.match(buf, j):
            return WAIT
        return TEXT
    limit = i + max_pending
    avail = min(len(buf), limit)
    e = TAG_INSIDE.match(buf, j, avail).end()
    if e < avail:
        c = buf[e]
        if c == ">":
            self_closing = buf[e - 1] == "/" and e > j
            inside = buf[j : e - 1] if self_closing else buf[j:e]
            return Tag(TagKind.OPEN, name, inside, self_closing, e + 1)
        if c == "<":
            return Tag(TagKind.BAD, name, end=e, reason=f"'<' inside the <{name}> tag")
        lt = buf.find("<", e + 1, avail)  # c is a quote that does not close before a '<'
        if lt >= 0:
            reason = f"'<' in an attribute value (or an unclosed quote) of <{name}>"
            return Tag(TagKind.BAD, name, end=lt, reason=reason)
    if len(buf) >= limit:
        return Tag(
            TagKind.BAD, name, end=limit, reason=f"<{name}> tag longer than {max_pending} chars"
        )
    if final:
        return Tag(TagKind.INCOMPLETE, name, end=len(buf), reason=f"input ended inside <{name}>")
    return WAIT_OPEN
