"""Lexical pieces of the protocol: tag names, tag and entity patterns, text decoding."""

from __future__ import annotations

import re

TAG_NAMES: tuple[str, ...] = ("thought", "response", "action_result", "action", "context")
"""Element names the parser recognises (``action_result`` before ``action`` for matching)."""

MAX_CLOSE_SPACE = 64
"""Whitespace allowed between a closing tag's name and its ``>`` (``</action  >``)."""

NAMES_PATTERN = "|".join(TAG_NAMES)
"""The tag names as a regular expression alternative."""
TAG_START = re.compile(rf"<(/?)({NAMES_PATTERN})(?=[\s/>])")
"""A known opening or closing tag name, with the character after it already present."""

CLOSE_TAIL = re.compile(rf"\s{{0,{MAX_CLOSE_SPACE}}}>")
"""The rest of a closing tag after its name."""

CLOSE_TAIL_PARTIAL = re.compile(rf"\s{{0,{MAX_CLOSE_SPACE}}}\Z")
"""A closing tag whose ``>`` has not arrived yet."""

TAG_INSIDE = re.compile(r"""(?:[^"'<>]|"[^"<]*"|'[^'<]*')*""")
"""Attributes of an opening tag up to its ``>``: quoted values may hold ``>`` but never ``<``."""

CDATA_OPEN = "<![CDATA["
CDATA_CLOSE = "]]>"


def prefixes(words: list[str]) -> frozenset[str]:
    """Every non-empty prefix of each of ``words``."""
    return frozenset(w[:k] for w in words for k in range(1, len(w) + 1))


TAG_PREFIXES: frozenset[str] = prefixes(
    [f"<{n}" for n in TAG_NAMES] + [f"</{n}" for n in TAG_NAMES]
)
"""Every prefix of a known tag name: text ending in one must wait for more input."""

BODY_PREFIXES: frozenset[str] = TAG_PREFIXES | prefixes([CDATA_OPEN])
"""As ``TAG_PREFIXES``, plus the CDATA opener, for element bodies."""

MAX_PREFIX = max(len(p) for p in BODY_PREFIXES)

_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
ENTITY = re.compile(r"&(?:(lt|gt|amp|quot|apos)|#([0-9]{1,7})|#x([0-9a-fA-F]{1,6}));")
"""The five XML entities and numeric character references."""

ENTITY_PARTIAL = re.compile(r"&(?:[a-z]{0,4}|#[0-9]{0,7}|#x[0-9a-fA-F]{0,6})\Z")
"""The start of an entity whose ``;`` has not arrived yet."""

_CDATA_SPLIT = re.compile(r"<!\[CDATA\[(.*?)(?:\]\]>|\Z)", re.S)


def entity_text(match: re.Match[str]) -> str:
    """The character an ``ENTITY`` match stands for (the match itself if not a character)."""
    name, dec, hexa = match.groups()
    if name:
        return _NAMED[name]
    code = int(dec) if dec else int(hexa, 16)
    if code == 0 or 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        return match.group(0)
    return chr(code)


def decode_entities(text: str) -> str:
    """Replace XML entities and character references; anything else is kept as written."""
    if "&" not in text:
        return text
    return ENTITY.sub(entity_text, text)


def decode_body(raw: str) -> str:
    """The character data of a raw element body: entities decoded, CDATA sections unwrapped."""
    if CDATA_OPEN not in raw:
        return decode_entities(raw)
    parts = _CDATA_SPLIT.split(raw)
    out = [decode_entities(p) if i % 2 == 0 else p for i, p in enumerate(parts)]
    return "".join(out)


def normalize_attribute(value: str) -> str:
    """An attribute value as XML reads it: entities decoded, tabs and newlines as spaces."""
    value = value.replace("\r\n", " ").translate(_ATTR_SPACE)
    return decode_entities(value)


_ATTR_SPACE = str.maketrans({"\t": " ", "\n": " ", "\r": " "})
