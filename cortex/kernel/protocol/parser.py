"""The Cortex protocol parser: incremental, tolerant and free of I/O.

``Parser.feed(chunk)`` takes model output as it streams (text or UTF-8 bytes, split anywhere)
and returns the events that chunk completed; ``close()`` ends the stream. Thought and
response text come out as deltas at once; an action comes out in the very ``feed()`` call
that delivers its closing tag. Malformed output gives ``ParseError`` events and parsing goes
on; nothing raises out of ``feed()`` or ``close()``. After merging adjacent text deltas, the
events do not depend on how the input was split. See docs/protocol.md.

Speed with small chunks: after each call that runs the state machine, ``_arm`` picks the fast
path the next chunk may take (text that only streams, body or opening-tag text that cannot
end anything yet and is held unread, a tag name still cut short, whitespace between
elements); such a chunk costs a few string tests. Held text is read, all at once, by the call
whose chunk might complete something, so no event comes later than it would otherwise.
"""

from __future__ import annotations

import codecs
import re

from cortex.errors import ConfigError
from cortex.kernel.protocol import codes
from cortex.kernel.protocol.attributes import (
    Problem,
    parse_attributes,
    read_action,
    read_final,
    unknown_attributes,
)
from cortex.kernel.protocol.body import BodyScanner, Outcome
from cortex.kernel.protocol.elements import (
    SNIPPET,
    End,
    OpenElement,
    error,
    finish,
    header_errors,
)
from cortex.kernel.protocol.events import Event, ParseError, ResponseDelta, ThoughtDelta
from cortex.kernel.protocol.markup import (
    CLOSE_TAIL,
    CLOSE_TAIL_PARTIAL,
    ENTITY,
    ENTITY_PARTIAL,
    MAX_PREFIX,
    TAG_NAMES,
    TAG_PREFIXES,
    TAG_START,
    entity_text,
)
from cortex.kernel.protocol.tags import WAIT_OPEN, Tag, TagKind, read_tag

DEFAULT_MAX_BODY = 1_000_000
"""Characters an element body may hold."""

DEFAULT_MAX_PENDING = 4_096
"""Characters an opening tag may span (what is held back while waiting for its ``>``)."""

# Where the parser is: outside any element, in a thought's or a response's text, in an
# element body, skipping an over-long body to its closing tag, or closed.
_TOP, _THOUGHT, _RESPONSE, _BODY, _SKIP, _CLOSED = range(6)
_PARENT_NAME = {_TOP: None, _THOUGHT: "thought", _RESPONSE: "response"}
_TAG_LIKE = re.compile(rf"<(?:[/!{''.join(sorted({n[0] for n in TAG_NAMES}))}]|\Z)")
"""A '<' that may start a tag the body scanner acts on (any other '<' in a body is text)."""
_TAG_MIN = min(len(n) for n in TAG_NAMES) + 2
"""The fewest characters from a '<' to a tag the body scanner acts on (``<action`` and one
more): a body holding fewer after its first such '<' cannot have ended yet."""
# Which fast path feed() may take next (chosen by Parser._arm after each slow call).
_FAST_NONE, _FAST_HOLD, _FAST_THOUGHT, _FAST_RESPONSE, _FAST_PREFIX, _FAST_SPACE = range(6)
_IDLE = BodyScanner("action", json=False, max_body=0)  # stands in while no body is open


class Parser:
    """Incremental, tolerant parser of the Cortex protocol (sans-IO)."""

    def __init__(
        self,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        max_pending: int = DEFAULT_MAX_PENDING,
        model_output: bool = True,
    ) -> None:
        """Limits are in characters. ``model_output=False`` reads runtime-written text (a context
        being re-parsed), where ``<action_result>`` and ``<context>`` blocks become events."""
        if max_body < 0:
            raise ConfigError(f"max_body must be >= 0, not {max_body}")
        if max_pending < 32:
            raise ConfigError(f"max_pending must be >= 32 (a tag has to fit), not {max_pending}")
        self.max_body = max_body
        self.max_pending = max_pending
        self.model_output = model_output
        self._utf8_cut = b""  # the start of a UTF-8 sequence cut short by the end of a chunk
        self._fast_cut = _FAST_NONE  # the fast path put aside while _utf8_cut waits
        self._closed = False
        self._buf = ""
        self._pos = 0
        self._base = 0  # stream offset of self._buf[0]
        self._mode = _TOP
        self._final = True  # the open response's final flag
        self._ctx_start = 0  # offset of the open thought or response
        self._ctx_tag = ""  # and its opening tag
        self._element: OpenElement | None = None
        self._scanner = _IDLE
        self._skip_prefix = ""
        self._parent = _TOP
        self._stray_at = -1
        self._stray_snippet = ""
        self._tag_wait = False  # self._buf is an opening tag waiting for its '>'
        self._ordinal = 0
        self._ids: set[str] = set()
        # The fast path feed() may take next (see _arm), and what it holds back: chunks of a
        # body or of an opening tag without '<' or self._stop (a body also takes a few after a
        # '<', see _body_markup), fewer than self._room characters in all; the state machine
        # reads them with the first chunk that does not qualify.
        self._fast = _FAST_SPACE
        self._hold: list[str] = []
        self._held = 0
        self._stop = "<"
        self._room = 0
        self._prefixes = TAG_PREFIXES

    @property
    def offset(self) -> int:
        """Characters of input taken so far (held-back input included)."""
        return self._base + len(self._buf) + self._held

    @property
    def buffered(self) -> int:
        """Characters held in memory: input waiting for more, plus the open body so far."""
        held = len(self._buf) - self._pos + self._held
        return held + self._scanner.size + len(self._stray_snippet)

    @property
    def context(self) -> str | None:
        """The element the parser is inside: None, "thought", "response", or a body's element."""
        if self._mode in (_BODY, _SKIP):
            return self._element.name if self._element else "action"
        return _PARENT_NAME.get(self._mode)

    def feed(self, chunk: str | bytes) -> list[Event]:
        """Take the next piece of output; return the events it completed."""
        try:
            if chunk.__class__ is not str:  # UTF-8 bytes
                if self._utf8_cut:
                    return self._feed_bytes(chunk)
                try:
                    chunk = chunk.decode()
                except (AttributeError, UnicodeDecodeError):  # a memoryview, a cut sequence...
                    return self._feed_bytes(chunk)
            # Fast paths: a chunk that cannot change the state costs a few string tests.
            fast = self._fast
            if fast == _FAST_HOLD:  # body text or an opening tag, read when it may end
                if "<" not in chunk and self._stop not in chunk:
                    held = self._held + len(chunk)
                    if held < self._room:
                        self._held = held
                        self._hold.append(chunk)
                        return []
                elif self._mode == _BODY:
                    return self._body_markup(chunk)
            elif fast == _FAST_THOUGHT:
                if "<" not in chunk and "&" not in chunk:
                    self._base += len(chunk)
                    return [ThoughtDelta(chunk)] if chunk else []
                return self._text_markup(chunk)
            elif fast == _FAST_RESPONSE:
                if "<" not in chunk and "&" not in chunk:
                    self._base += len(chunk)
                    return [ResponseDelta(chunk, self._final)] if chunk else []
                return self._text_markup(chunk)
            elif fast == _FAST_PREFIX:  # a tag cut short, still cut short
                if self._buf + chunk in self._prefixes:
                    self._buf += chunk
                    return []
                return self._prefix_markup(chunk)
            elif fast == _FAST_SPACE:  # whitespace between elements
                if chunk.isspace():
                    self._base += len(chunk)
                    return []
                return self._text_markup(chunk)
            return self._feed(chunk)
        except Exception as exc:  # noqa: BLE001 - feed() must never raise; report instead
            return self._internal_error(exc)

    def close(self) -> list[Event]:
        """End the stream: flush what is held back and report anything left unclosed."""
        if self._closed:
            return []
        try:
            return self._close()
        except Exception as exc:  # noqa: BLE001 - close() must never raise; report instead
            return self._internal_error(exc)

    # ---- driving ------------------------------------------------------------------------

    def _feed_bytes(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Bytes that are not whole UTF-8 on their own: a sequence cut short by the end of the
        chunk waits for the next one; bad bytes become U+FFFD."""
        if self._utf8_cut:  # nothing was read since the cut: the fast path set aside still holds
            data = self._utf8_cut + data
            self._utf8_cut, self._fast = b"", self._fast_cut
        text, used = codecs.utf_8_decode(data, "replace", False)
        out = self.feed(text)
        if used < len(data):
            self._utf8_cut = bytes(data[used:])
            self._fast_cut, self._fast = self._fast, _FAST_NONE  # a str chunk must end it first
        return out

    def _end_utf8(self) -> str:
        """A UTF-8 sequence cut short that will not go on: U+FFFD (empty if there is none)."""
        cut, self._utf8_cut = self._utf8_cut, b""
        return codecs.utf_8_decode(cut, "replace", True)[0]

    def _feed(self, chunk: str) -> list[Event]:
        """The general path: run the state machine over what is held and ``chunk``."""
        if self._utf8_cut:  # a str chunk after bytes cut inside a UTF-8 sequence
            chunk = self._end_utf8() + chunk
        if self._closed:
            return [self._error(codes.CLOSED, "feed() after close(); input ignored", self.offset)]
        hold = self._hold
        if hold:  # what the fast path held, read now with this chunk
            hold.append(chunk)
            chunk = "".join(hold)
            hold.clear()
            self._held = 0
        if not chunk:
            return []
        self._buf += chunk
        self._tag_wait = False
        out: list[Event] = []
        self._run(out, False)
        if self._pos:
            self._base += self._pos
            self._buf = self._buf[self._pos :]
            self._pos = 0
        self._arm()
        return out

    def _body_markup(self, chunk: str) -> list[Event]:
        """Body text with a '<': held too while no tag can be complete yet (``}</ac``)."""
        m = _TAG_LIKE.search(chunk)
        room = self._room if m is None else min(self._room, self._held + m.start() + _TAG_MIN)
        held = self._held + len(chunk)
        if held >= room:
            return self._feed(chunk)
        self._room, self._held = room, held
        self._hold.append(chunk)
        return []

    def _text_markup(self, chunk: str) -> list[Event]:
        """Text (or whitespace between elements) then a tag name cut short (``... <thou``):
        the text is streamed and the rest waits, without the general path."""
        i = chunk.find("<")
        if i < 0 or len(chunk) - i > MAX_PREFIX or chunk[i:] not in TAG_PREFIXES:
            return self._feed(chunk)
        text = chunk[:i]
        out: list[Event] = []
        if self._mode == _TOP:
            if text and not text.isspace():  # stray text
                return self._feed(chunk)
        elif "&" in text:
            return self._feed(chunk)
        elif text:
            out.append(self._delta(text))
        self._buf = chunk[i:]
        self._base += i
        self._fast, self._prefixes = _FAST_PREFIX, TAG_PREFIXES
        return out

    def _prefix_markup(self, chunk: str) -> list[Event]:
        """A tag name cut short, then more: an opening tag still without its '>' (and with no
        '<') waits for it, without the general path."""
        text = self._buf + chunk
        if self._mode <= _RESPONSE and ">" not in text and text.count("<") == 1:
            m = TAG_START.match(text)
            if m is not None and not m.group(1) and len(text) < self.max_pending:
                self._buf, self._tag_wait = text, True
                self._fast, self._stop, self._room = _FAST_HOLD, ">", self.max_pending - len(text)
                return []
        return self._feed(chunk)

    def _arm(self) -> None:
        """Choose the fast path the next chunk may take, from where the parser now is."""
        mode, buf = self._mode, self._buf
        self._fast = _FAST_NONE
        if self._tag_wait:  # only a '<' or '>' can change anything, or reaching max_pending
            self._fast, self._stop, self._room = _FAST_HOLD, ">", self.max_pending - len(buf)
        elif buf:
            if mode <= _RESPONSE:
                self._fast, self._prefixes = _FAST_PREFIX, TAG_PREFIXES
            elif mode == _BODY:
                self._fast, self._prefixes = _FAST_PREFIX, self._scanner.close_prefixes
        elif mode == _BODY:  # only a '<' can end a body (or reaching max_body)
            sc = self._scanner
            if not sc.strict:  # in strict mode any character may prove the body over
                self._fast, self._stop, self._room = _FAST_HOLD, "<", self.max_body - sc.size + 1
        elif mode == _THOUGHT:
            self._fast = _FAST_THOUGHT
        elif mode == _RESPONSE:
            self._fast = _FAST_RESPONSE
        elif mode == _TOP and self._stray_at < 0:
            self._fast = _FAST_SPACE

    def _close(self) -> list[Event]:
        self._closed = True
        self._fast = _FAST_NONE
        self._buf += "".join(self._hold) + self._end_utf8()
        self._hold.clear()
        self._held = 0
        out: list[Event] = []
        self._run(out, True)
        if self._mode == _TOP:
            self._flush_stray(out)
        elif self._mode in (_THOUGHT, _RESPONSE):
            name = _PARENT_NAME[self._mode]
            out.append(
                self._error(
                    codes.UNCLOSED_TAG,
                    f"<{name}> was never closed (input ended)",
                    self._ctx_start,
                    self._ctx_tag,
                )
            )
        self._buf, self._pos, self._mode = "", 0, _CLOSED
        return out

    def _run(self, out: list[Event], final: bool) -> None:
        """Step the state machine until it needs more input."""
        while True:  # an if chain, not a table: the compiled build calls the steps directly
            mode = self._mode
            if mode == _THOUGHT or mode == _RESPONSE:
                more = self._step_text(out, final)
            elif mode == _BODY:
                more = self._step_body(out, final)
            elif mode == _TOP:
                more = self._step_top(out, final)
            elif mode == _SKIP:
                more = self._step_skip(out, final)
            else:
                more = False
            if not more:
                return

    # ---- text ---------------------------------------------------------------------------

    def _step_text(self, out: list[Event], final: bool) -> bool:
        """Thought or response text up to the next tag that changes where we are."""
        buf, pos, mode = self._buf, self._pos, self._mode
        n = len(buf)
        pieces: list[str] = []
        while pos < n:
            lt = buf.find("<", pos)  # the next '<' or '&': two finds beat a regex search
            i = buf.find("&", pos, n if lt < 0 else lt)
            if i < 0:
                i = lt
            if i < 0:
                pieces.append(buf[pos:])
                pos = n
                break
            if i > pos:
                pieces.append(buf[pos:i])
            if buf[i] == "&":
                em = ENTITY.match(buf, i)
                if em:
                    pieces.append(entity_text(em))
                    pos = em.end()
                elif not final and ENTITY_PARTIAL.match(buf, i):
                    pos = i
                    break
                else:
                    pieces.append("&")
                    pos = i + 1
                continue
            tag = read_tag(buf, i, final, self.max_pending)
            if tag.kind is TagKind.WAIT:
                self._tag_wait = tag is WAIT_OPEN
                pos = i
                break
            if tag.kind is TagKind.TEXT:
                pieces.append("<")
                pos = i + 1
                continue
            self._emit_text(out, pieces)
            pieces = []
            pos = self._tag(out, buf, i, tag)
            if self._mode != mode:
                self._pos = pos
                return True
        self._emit_text(out, pieces)
        self._pos = pos
        return False

    def _emit_text(self, out: list[Event], pieces: list[str]) -> None:
        text = "".join(pieces)
        if text:
            out.append(self._delta(text))

    def _delta(self, text: str) -> Event:
        """A piece of the open thought's or response's text, as an event."""
        if self._mode == _THOUGHT:
            return ThoughtDelta(text)
        return ResponseDelta(text, self._final)

    def _step_top(self, out: list[Event], final: bool) -> bool:
        """Outside any element: whitespace is ignored, other text is stray."""
        buf, pos = self._buf, self._pos
        n = len(buf)
        while pos < n:
            i = buf.find("<", pos)
            if i < 0:
                self._stray(buf, pos, n)
                pos = n
                break
            if i > pos:
                self._stray(buf, pos, i)
            tag = read_tag(buf, i, final, self.max_pending)
            if tag.kind is TagKind.WAIT:
                self._tag_wait = tag is WAIT_OPEN
                pos = i
                break
            if tag.kind is TagKind.TEXT:
                self._stray(buf, i, i + 1)
                pos = i + 1
                continue
            if self._stray_at >= 0:
                self._flush_stray(out)
            pos = self._tag(out, buf, i, tag)
            if self._mode != _TOP:
                self._pos = pos
                return True
        self._pos = pos
        return False

    def _stray(self, buf: str, start: int, end: int) -> None:
        if self._stray_at < 0:
            segment = buf[start:end]
            stripped = segment.lstrip()
            if stripped:
                self._stray_at = self._base + end - len(stripped)
                self._stray_snippet = stripped[:SNIPPET]
        elif len(self._stray_snippet) < SNIPPET:
            self._stray_snippet += buf[start : min(end, start + SNIPPET - len(self._stray_snippet))]

    def _flush_stray(self, out: list[Event]) -> None:
        if self._stray_at >= 0:
            out.append(
                ParseError(
                    code=codes.STRAY_TEXT,
                    message="text outside <thought>, <action> and <response> is ignored",
                    offset=self._stray_at,
                    snippet=self._stray_snippet.rstrip(),
                )
            )
            self._stray_at = -1
            self._stray_snippet = ""

    # ---- tags ---------------------------------------------------------------------------

    def _tag(self, out: list[Event], buf: str, i: int, tag: Tag) -> int:
        """Act on a tag read at ``buf[i]``; returns the position after it."""
        at = self._base + i
        text = buf[i : tag.end]
        if tag.kind in (TagKind.BAD, TagKind.INCOMPLETE):
            code = codes.BAD_TAG if tag.kind is TagKind.BAD else codes.INCOMPLETE_TAG
            out.append(self._error(code, tag.reason + "; tag dropped", at, text))
            return tag.end
        name = tag.name
        if tag.kind is TagKind.CLOSE:
            if (name, self._mode) in (("thought", _THOUGHT), ("response", _RESPONSE)):
                self._mode = _TOP
            else:
                where = _PARENT_NAME[self._mode]
                place = f"inside <{where}>" if where else "outside any element"
                message = f"</{name}> {place} closes nothing"
                out.append(self._error(codes.STRAY_CLOSE_TAG, message, at, text))
            return tag.end
        attrs, problems = parse_attributes(tag.inside, tag.plain)
        if name == "thought" or name == "response":
            self._open_text(out, name, attrs, problems, tag, at, text)
            return tag.end
        header = None
        duplicate = False
        if name == "action":
            self._ordinal += 1
            header = read_action(attrs, problems, self._ordinal, self._ids)
            duplicate = header.id in self._ids
            self._ids.add(header.id)
        else:
            problems = problems + unknown_attributes(name, attrs)
        element = OpenElement(
            name,
            at,
            self._base + tag.end,
            text,
            attrs,
            problems,
            header,
            duplicate,
            _PARENT_NAME[self._mode],
        )
        if tag.self_closing:
            self._finish(out, element, "", element.body_start, End.CLOSED)
        else:
            self._element = element
            self._scanner = BodyScanner(name, json=name == "action", max_body=self.max_body)
            self._parent = self._mode
            self._mode = _BODY
        return tag.end

    def _open_text(
        self,
        out: list[Event],
        name: str,
        attrs: dict[str, str],
        problems: list[Problem],
        tag: Tag,
        at: int,
        text: str,
    ) -> None:
        """A ``<thought>`` or ``<response>`` opening tag."""
        if name == "thought" and self._mode == _THOUGHT:
            message = "<thought> inside a thought; ignored"
            out.append(self._error(codes.NESTED_TAG, message, at, text))
            return
        if self._mode != _TOP:
            open_name = _PARENT_NAME[self._mode]
            out.append(
                self._error(
                    codes.UNCLOSED_TAG,
                    f"<{open_name}> was not closed before <{name}>; closed there",
                    self._ctx_start,
                    self._ctx_tag,
                )
            )
        if attrs:
            problems = problems + unknown_attributes(name, attrs)
        if name == "response":
            self._final, final_problems = read_final(attrs)
            problems += final_problems
        for code, message in problems:
            out.append(self._error(code, message, at, text))
        self._ctx_start, self._ctx_tag = at, text
        self._mode = _TOP if tag.self_closing else (_THOUGHT if name == "thought" else _RESPONSE)

    # ---- bodies -------------------------------------------------------------------------

    def _step_body(self, out: list[Event], final: bool) -> bool:
        sc, element = self._scanner, self._element
        assert element is not None
        pos, outcome = sc.scan(self._buf, self._pos, final)
        self._pos = pos
        if outcome is Outcome.MORE:
            if not final:
                return False
            if sc.first_close is not None:
                return self._fallback(out)
            self._pos = len(self._buf)
            self._finish(out, element, sc.raw(), self._base + self._pos, End.EOF)
        elif outcome is Outcome.CLOSE:
            self._pos = sc.close_end
            self._finish(out, element, sc.raw(), self._base + sc.close_end, End.CLOSED)
        elif outcome is Outcome.IMPLICIT:
            self._finish(out, element, sc.raw(), self._base + pos, End.IMPLICIT)
        elif outcome is Outcome.FALLBACK:
            return self._fallback(out)
        else:  # Outcome.LIMIT
            out += header_errors(element)
            out.append(
                self._error(
                    codes.BODY_TOO_LARGE,
                    f"<{element.name}> body longer than {self.max_body} chars; skipped",
                    element.position,
                    element.tag,
                    element.id,
                )
            )
            self._skip_prefix = sc.close_prefix
            self._scanner = _IDLE
            self._mode = _SKIP
            return True
        self._leave_body()
        return True

    def _fallback(self, out: list[Event]) -> bool:
        """End the body at its first closing tag and read what followed it again."""
        sc, element = self._scanner, self._element
        assert element is not None and sc.first_close is not None
        whole = sc.raw() + self._buf[self._pos :]
        end = element.body_start + sc.first_close_end
        self._finish(out, element, whole[: sc.first_close], end, End.FALLBACK)
        self._buf = whole[sc.first_close_end :]
        self._base = end
        self._pos = 0
        self._leave_body()
        return True

    def _leave_body(self) -> None:
        self._mode = self._parent
        self._element = None
        self._scanner = _IDLE

    def _step_skip(self, out: list[Event], final: bool) -> bool:
        """Skip an over-long body up to its closing tag (``out`` is unused: nothing to say)."""
        buf, pos, prefix = self._buf, self._pos, self._skip_prefix
        while True:
            i = buf.find(prefix, pos)
            if i < 0:
                k = buf.rfind("<", max(pos, len(buf) - len(prefix)))
                self._pos = k if k >= 0 and not final and prefix.startswith(buf[k:]) else len(buf)
                if final:
                    self._leave_body()
                return final
            end = _close_tail(buf, i + len(prefix), final)
            if end < 0:
                self._pos = i
                return False
            if end:
                self._pos = end
                self._leave_body()
                return True
            pos = i + 1

    def _finish(self, out: list[Event], element: OpenElement, raw: str, end: int, how: str) -> None:
        out += finish(element, raw, end, how, model_output=self.model_output)

    # ---- helpers ------------------------------------------------------------------------

    def _error(
        self, code: str, message: str, offset: int, snippet: str = "", action_id: str | None = None
    ) -> ParseError:
        return error(code, message, offset, snippet, action_id)

    def _internal_error(self, exc: Exception) -> list[Event]:
        """Report a parser bug as an event and start over from a clean state."""
        offset = self.offset
        self._buf, self._pos, self._base = "", 0, offset
        self._hold.clear()
        self._held, self._tag_wait, self._utf8_cut = 0, False, b""
        self._mode, self._element, self._scanner = _CLOSED if self._closed else _TOP, None, _IDLE
        self._arm()
        message = f"parser bug: {type(exc).__name__}: {exc}; state reset"
        return [ParseError(code=codes.INTERNAL_ERROR, message=message, offset=offset)]


def _close_tail(buf: str, j: int, final: bool) -> int:
    """Index past ``\\s*>`` at ``j``; -1 when it may still arrive; 0 when it is not there."""
    cm = CLOSE_TAIL.match(buf, j)
    if cm:
        return cm.end()
    if not final and CLOSE_TAIL_PARTIAL.match(buf, j):
        return -1
    return 0
