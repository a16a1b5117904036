"""Finding where an element body ends, incrementally, without losing what follows it.

For ``<action>`` the body is JSON: the scanner tracks JSON string state (quotes and backslash
escapes) so a ``</action>`` inside a JSON string does not end the body. When that reading is
proved wrong later (a raw control character inside the "string", or text no JSON can hold
once a ``</action>`` was skipped), the body falls back to ending at that first ``</action>``.
A known protocol tag (``<action``, ``<thought``, ``</thought>``, ...) outside any JSON string
ends an unclosed body. ``<![CDATA[ ... ]]>`` sections are literal. Bodies of other elements
(``<action_result>``, ``<context>``) end at their first closing tag outside CDATA.
"""

from __future__ import annotations

import functools
import re

from cortex.kernel.protocol.markup import (
    BODY_PREFIXES,
    CDATA_CLOSE,
    CDATA_OPEN,
    CLOSE_TAIL,
    CLOSE_TAIL_PARTIAL,
    MAX_PREFIX,
    TAG_START,
    prefixes,
)


class Outcome:
    """What a call to ``BodyScanner.scan`` found (plain constants, as ``tags.TagKind``)."""

    MORE = "more"
    """Everything up to the returned position is body; the rest must wait for more input."""
    CLOSE = "close"
    """The closing tag starts at the returned position."""
    IMPLICIT = "implicit"
    """Another protocol tag starts at the returned position: the body was never closed."""
    FALLBACK = "fallback"
    """The JSON string reading was wrong: the body ends at ``first_close``."""
    LIMIT = "limit"
    """The body is longer than ``max_body``; the returned position is where that happened."""


_JSON_CHARS = r" \t\n\r{}\[:,0-9.eE+\-truflasn"
_STRICT: dict[tuple[bool, bool], re.Pattern[str]] = {
    # (cdata, in_string) -> the characters worth stopping at, in strict mode
    (False, False): re.compile(rf"[^{_JSON_CHARS}\]]"),
    (False, True): re.compile(r'["\\<\x00-\x1f]'),
    (True, False): re.compile(rf"[^{_JSON_CHARS}]"),
    (True, True): re.compile(r'["\\<\]\x00-\x1f]'),
}


def _json_runs(cdata: bool) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Patterns that skip JSON text which cannot end the body, outside or inside CDATA: one
    to read from outside a string (it ends inside one when group 1 is set), one to read from
    inside a string (it ends inside one unless ``lastindex`` is 1).

    Skipped: whole strings without control characters (escapes whole), and any '<' or ']'
    whose next character shows it starts no closing tag, no CDATA section and no CDATA end.
    Possessive quantifiers keep a string that never closes from backtracking exponentially.
    """
    if cdata:  # '<' never opens anything in CDATA, but ']' may end it
        stops = r"<\]"
        looks = r"|<(?=[^/])|\](?=[^\]]|\][^>])"
        outside_text = rf"[^\"{stops}]++{looks}"
    else:  # outside a string, a '<' always needs a closer look
        stops = "<"
        looks = "|<(?=[^/!])"
        outside_text = rf"[^\"{stops}]++"
    string = rf'(?:[^"\\{stops}\x00-\x1f]++|\\[^\x00-\x1f]{looks})*+'
    outside = rf'(?:{outside_text}|"{string}")*+(?:("){string})?'
    return re.compile(outside), re.compile(rf'{string}(?:("){outside})?')


_JSON_RUNS: dict[tuple[bool, bool], re.Pattern[str]] = {}
"""(cdata, in_string) -> the pattern of ``_json_runs`` to read with (outside strict mode)."""
for _cdata in (False, True):
    _JSON_RUNS[(_cdata, False)], _JSON_RUNS[(_cdata, True)] = _json_runs(_cdata)

_PLAIN = re.compile(r"<")
_PLAIN_CDATA = re.compile(r"\]")
_NOT_SPACE = re.compile(r"[^ \t\n\r]")
_SEPARATORS = frozenset(":,]}")


@functools.cache
def _close_prefixes(element: str) -> frozenset[str]:
    """Every prefix of ``</element``."""
    return prefixes([f"</{element}"])


class BodyScanner:
    """Incremental scanner of one element body; keeps the raw body seen so far."""

    __slots__ = (
        "close_prefix",
        "close_prefixes",
        "json",
        "max_body",
        "parts",
        "size",
        "cdata",
        "in_str",
        "esc",
        "strict",
        "plain",
        "expect_sep",
        "first_close",
        "first_close_end",
        "close_end",
        "_origin",
        "_rough_end",
    )

    def __init__(self, element: str, *, json: bool, max_body: int) -> None:
        self.close_prefix = f"</{element}"
        self.close_prefixes = _close_prefixes(element)
        """Every prefix of ``close_prefix``: a body's end cut short there must wait."""
        self.json = json
        self.max_body = max_body
        self.parts: list[str] = []
        self.size = 0
        """Raw body characters scanned so far."""
        self.cdata = False
        self.in_str = False
        self.esc = False
        self.strict = False
        """A closing tag was skipped as part of a JSON string: the JSON is now checked closely."""
        self.plain = not json
        """Not (or no longer) read as JSON: the first closing tag outside CDATA ends the body."""
        self.expect_sep = False
        self.first_close: int | None = None
        """Body offset of the first closing tag skipped inside a JSON string or CDATA."""
        self.first_close_end = 0
        self.close_end = 0
        """Buffer index just past the closing tag, after ``Outcome.CLOSE``."""
        self._origin = 0
        self._rough_end = 0
        """Body offset up to which ``_skip_plain_text`` was found not to apply (so that text
        is looked at once, however often the scan stops in it)."""

    def raw(self) -> str:
        """The raw body scanned so far (exactly as written)."""
        if len(self.parts) > 1:
            self.parts = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    def scan(self, buf: str, pos: int, final: bool) -> tuple[int, str]:
        """Scan ``buf`` from ``pos``; returns where it stopped and why (see ``Outcome``)."""
        start = pos
        self._origin = origin = self.size - pos  # body offset of buf[0]
        n = len(buf)
        wend = min(n, self.max_body - origin)  # buf[wend] would be past max_body
        outcome = Outcome.MORE
        while pos < wend:
            if self.esc:
                self.esc = False
                pos += 1
                continue
            if self.strict or self.plain:
                m = self._stops().search(buf, pos, wend)
                if m is None:
                    pos = wend
                    break
                i = m.start()
            else:  # JSON: skip what cannot end the body
                i = -1 if self.cdata else self._skip_plain_text(buf, pos, wend)
                if i < 0:
                    in_str = self.in_str
                    m = _JSON_RUNS[self.cdata, in_str].match(buf, pos, wend)
                    self.in_str = m.lastindex != 1 if in_str else m.lastindex == 1
                    i = m.end()
                if i == wend:
                    pos = wend
                    break
            c = buf[i]
            if c == "<":
                step, outcome = self._angle(buf, i, final)
                if outcome is not Outcome.MORE or step < 0:
                    pos = i
                    break
                pos = step
            elif c == '"' and not self.plain:
                if self.in_str:
                    self.in_str = False
                    self.expect_sep = self.strict
                elif self.expect_sep:
                    outcome = Outcome.FALLBACK
                    pos = i
                    break
                else:
                    self.in_str = True
                pos = i + 1
            elif c == "\\" and self.in_str:
                self.esc = True
                pos = i + 1
            elif c == "]" and self.cdata:
                if buf.startswith(CDATA_CLOSE, i, wend):
                    self.cdata = False
                    pos = i + 3
                elif not final and n - i < 3 and CDATA_CLOSE.startswith(buf[i:]):
                    pos = i
                    break
                else:
                    self.expect_sep = False
                    pos = i + 1
            elif c in _SEPARATORS and self.expect_sep:
                self.expect_sep = False
                pos = i + 1
            elif c < " " and self.in_str and not self.strict:
                self.plain = True  # a raw control character in a string: this is not JSON
                self.in_str = False
                pos = i + 1
            else:  # text no JSON can hold, after a skipped closing tag
                outcome = Outcome.FALLBACK
                pos = i
                break
        if pos > wend:  # a tag (or CDATA opener) skipped across max_body: the body stops there
            pos = wend
        if outcome is Outcome.MORE and pos == wend and wend < n:
            outcome = self._at_limit(buf, pos, final)
        if pos > start:
            self.parts.append(buf[start:pos])
            self.size = origin + pos
        return pos, outcome

    def _skip_plain_text(self, buf: str, pos: int, wend: int) -> int:
        """The next '<' (or ``wend``) when the JSON text up to it has no escape and no control
        character, so that only the parity of its quotes matters; else -1."""
        if self._origin + pos < self._rough_end:  # known to have escapes: no need to look again
            return -1
        i = buf.find("<", pos, wend)
        if i < 0:
            i = wend
        text = buf[pos:i]
        if "\\" in text or not text.isprintable():
            self._rough_end = self._origin + i
            return -1
        if text.count('"') & 1:
            self.in_str = not self.in_str
        return i

    def _stops(self) -> re.Pattern[str]:
        """The characters worth stopping at, once the body is no longer read as plain JSON."""
        if self.plain:
            return _PLAIN_CDATA if self.cdata else _PLAIN
        if self.expect_sep and not self.in_str:
            return _NOT_SPACE
        return _STRICT[(self.cdata, self.in_str)]

    def _closing_allowed(self) -> bool:
        return not self.cdata and (self.plain or not self.in_str)

    def _close_at(self, buf: str, i: int, final: bool) -> int:
        """Index past a complete closing tag at ``i``; -1 if it may still arrive; 0 if none."""
        prefix = self.close_prefix
        if buf.startswith(prefix, i):
            cm = CLOSE_TAIL.match(buf, i + len(prefix))
            if cm:
                return cm.end()
            if not final and CLOSE_TAIL_PARTIAL.match(buf, i + len(prefix)):
                return -1
        elif not final and prefix.startswith(buf[i:]):
            return -1
        return 0

    def _angle(self, buf: str, i: int, final: bool) -> tuple[int, str]:
        """Handle a ``<`` at ``i``: returns (next position, or -1 to wait for input; outcome)."""
        end = self._close_at(buf, i, final)
        if end < 0:
            return -1, Outcome.MORE
        if end:
            if self._closing_allowed():
                self.close_end = end
                return i, Outcome.CLOSE
            if self.first_close is None:  # inside a JSON string or CDATA: maybe not the end
                self.first_close = self._origin + i
                self.first_close_end = self._origin + end
                self.strict = self.json
            return end, Outcome.MORE
        suspect = self.strict and not self.plain
        if self.cdata:
            return (i, Outcome.FALLBACK) if suspect and not self.in_str else (i + 1, Outcome.MORE)
        if buf.startswith(CDATA_OPEN, i):
            self.cdata = True
            return i + len(CDATA_OPEN), Outcome.MORE
        if not final and len(buf) - i <= MAX_PREFIX and buf[i:] in BODY_PREFIXES:
            return -1, Outcome.MORE
        if self.in_str and not self.plain:
            if suspect and TAG_START.match(buf, i):
                return i, Outcome.FALLBACK  # a protocol tag inside a suspect string
            return i + 1, Outcome.MORE
        if suspect:
            return i, Outcome.FALLBACK  # JSON never holds '<' outside strings
        if TAG_START.match(buf, i):
            return i, Outcome.IMPLICIT
        return i + 1, Outcome.MORE

    def _at_limit(self, buf: str, pos: int, final: bool) -> str:
        """At body offset ``max_body`` with more input: only a closing tag may start here."""
        if buf[pos] == "<" and self._closing_allowed():
            end = self._close_at(buf, pos, final)
            if end < 0:
                return Outcome.MORE
            if end:
                self.close_end = end
                return Outcome.CLOSE
        return Outcome.FALLBACK if self.strict else Outcome.LIMIT
