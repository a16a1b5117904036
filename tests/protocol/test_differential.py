"""Differential test: on well-formed (escaped) output the parser agrees with lxml.

Hypothesis writes well-formed transcripts (text and attributes XML-escaped; action bodies
either escaped or in CDATA); lxml's XMLPullParser reads them inside a root element. Both are
reduced to the same sequence: thought text, response text (with ``final``), and actions
(attributes and body text), adjacent texts of one kind joined.
"""

from __future__ import annotations

import json
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from cortex.kernel.protocol import ActionDeclared, ParseError, ResponseDelta, ThoughtDelta, codes
from tests.protocol.support import parse_chunks, split

# Text as a model writes it: words, punctuation, markup characters, non-ASCII, newlines.
_PIECES = st.sampled_from(
    [" ", "\n", "a", "word", "x < y", "a & b", ">", '"', "'", "é", "日本", "🚀", "\t",
     "</action>", "<thought>", "]]>", "&amp;", "$ref", "\\", "{", "}"]
)  # fmt: skip
_TEXT = st.lists(_PIECES, min_size=1, max_size=8).map("".join)
_JSON_SCALAR = st.one_of(
    _TEXT, st.integers(-(10**6), 10**6), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)  # fmt: skip
_JSON = st.recursive(
    _JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)
_NAMES = st.sampled_from(["web.fetch", "fs.read", "a&b", 'say "hi"', "x<y", "ünï"])
_TYPES = st.sampled_from(["tool", "llm", "agent", "workflow", "relic", "internal"])
_MODES = st.sampled_from(["sync", "async", "fire_and_forget"])


@st.composite
def _action(draw: st.DrawFn, ordinal: int) -> str:
    attrs = {"type": draw(_TYPES), "name": draw(_NAMES), "id": f"act{ordinal}"}
    if draw(st.booleans()):
        attrs["mode"] = draw(_MODES)
    if draw(st.booleans()):
        attrs["note"] = draw(_TEXT).replace("\t", " ").replace("\n", " ")
    params = {"value": draw(_JSON), "text": draw(_TEXT)}
    indent = draw(st.sampled_from([None, 2]))
    body = json.dumps(params, ensure_ascii=draw(st.booleans()), indent=indent)
    if "]]>" not in body and draw(st.booleans()):
        body = f"<![CDATA[{body}]]>"
    else:
        body = escape(body)
    rendered = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
    return f"<action{rendered}>{body}</action>"


@st.composite
def transcripts(draw: st.DrawFn) -> str:
    """A well-formed transcript of thoughts (with actions), actions and responses."""
    parts = []
    ordinal = 0
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["thought", "action", "response"]))
        if kind == "action":
            ordinal += 1
            parts.append(draw(_action(ordinal)))
        elif kind == "thought":
            inner = [escape(draw(_TEXT))]
            for _ in range(draw(st.integers(0, 3))):
                ordinal += 1
                inner += [draw(_action(ordinal)), escape(draw(_TEXT))]
            parts.append(f"<thought>{''.join(inner)}</thought>")
        else:
            final = draw(st.sampled_from(["true", "false"]))
            parts.append(f'<response final="{final}">{escape(draw(_TEXT))}</response>')
        parts.append(draw(st.sampled_from(["", "\n", "\n\n  "])))
    return "".join(parts)


def _join(items: list[tuple[Any, ...]], item: tuple[Any, ...]) -> None:
    """Append ``item``, joining it to the previous text item of the same kind."""
    if item[0] in ("thought", "response") and not item[-1]:
        return
    if items and item[0] in ("thought", "response") and items[-1][:-1] == item[:-1]:
        items[-1] = (*item[:-1], items[-1][-1] + item[-1])
    else:
        items.append(item)


def lxml_view(text: str) -> list[tuple[Any, ...]]:
    """What lxml reads: thought text, response text and actions, in order."""
    pull = etree.XMLPullParser(events=("end",))
    pull.feed(f"<root>{text}</root>")
    root = pull.close()
    items: list[tuple[Any, ...]] = []
    for element in root:
        if element.tag == "action":
            _join(items, ("action", dict(element.attrib), element.text or ""))
            continue
        final = element.get("final") == "true"
        key: tuple[Any, ...] = ("thought",) if element.tag == "thought" else ("response", final)
        _join(items, (*key, element.text or ""))
        for child in element:
            _join(items, ("action", dict(child.attrib), child.text or ""))
            _join(items, (*key, child.tail or ""))
    return items


def parser_view(events: list[Any]) -> list[tuple[Any, ...]]:
    """The same view from the parser's events."""
    items: list[tuple[Any, ...]] = []
    for event in events:
        if isinstance(event, ThoughtDelta):
            _join(items, ("thought", event.text))
        elif isinstance(event, ResponseDelta):
            _join(items, ("response", event.final, event.text))
        elif isinstance(event, ActionDeclared):
            _join(items, ("action", event.attributes, event.body))
    return items


@settings(max_examples=300, deadline=None)
@given(text=transcripts(), sizes=st.lists(st.integers(1, 40), min_size=1, max_size=8))
def test_parser_agrees_with_lxml_on_well_formed_output(text: str, sizes: list[int]) -> None:
    events = parse_chunks(split(text, sizes))
    errors = [e for e in events if isinstance(e, ParseError)]
    assert {e.code for e in errors} <= {codes.UNKNOWN_ATTRIBUTE}  # the optional "note"
    assert parser_view(events) == lxml_view(text)
    for event in events:
        if isinstance(event, ActionDeclared):
            assert event.params == json.loads(event.body)


@pytest.mark.parametrize("body", ['{"q": "a<b"}', '{"q": "AT&T"}', '{"q": "x</action>y"}'])
def test_lxml_recover_mangles_what_the_parser_keeps(body: str) -> None:
    """Why the parser exists: lxml's recovery cuts the body short or drops later actions."""
    text = (
        f'<action type="tool" name="x" id="a">{body}</action>'
        '<action type="tool" name="x" id="b">{"q": "ok"}</action>'
    )
    recovered = etree.fromstring(f"<root>{text}</root>", etree.XMLParser(recover=True))
    lxml_bodies = [(a.get("id"), a.text) for a in recovered.iter("action")]
    ours = [(e.id, e.body) for e in parse_chunks([text]) if isinstance(e, ActionDeclared)]
    assert ours == [("a", body), ("b", '{"q": "ok"}')]
    assert lxml_bodies != ours
