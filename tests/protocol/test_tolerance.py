"""Tolerance: malformed output never costs an intact action, and every fault is reported."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from cortex.kernel.protocol import ActionDeclared, Parser, ParseError, codes
from tests.protocol.support import merge_deltas, parse, parse_chunks, random_split



def _act(aid: str, body: str, attrs: str = 'type="tool" name="x"') -> str:
    return f'<action {attrs} id="{aid}">{body}'


# One fragment per malformation the brief lists, with the code (or codes, one of which) it
# must raise; None where that depends on where it lands (text is only stray outside elements).
# None may swallow what follows it (fragments are joined by newlines, as models write them).
FRAGMENTS: dict[str, tuple[str, str | tuple[str, ...] | None]] = {
    "stray text": ("Sure, here is what I will do:", None),
    "stray close": ("</thought></action></response>", codes.STRAY_CLOSE_TAG),
    "plain-text body": (_act("j1", "not json</action>"), codes.INVALID_JSON),
    "trailing comma": (_act("j2", '{"a": 1,}</action>'), codes.INVALID_JSON),
    "unclosed, complete": (  # unclosed_action when plain text follows it
        _act("u1", '{"done": true}'), (codes.UNCLOSED_TAG, codes.UNCLOSED_ACTION)
    ),
    "unclosed, cut": (_act("u2", '{"a": "cut'), codes.UNCLOSED_ACTION),
    "unbalanced quote": (_act("q1", '{"a": "b}</action>'), codes.INVALID_JSON),
    "unclosed CDATA": (_act("c1", '<![CDATA[{"a": 1}</action>'), codes.UNCLOSED_TAG),
    "unknown type": (_act("t1", "{}</action>", 'type="plugin" name="x"'), codes.UNKNOWN_TYPE),
    "unknown attribute": (
        _act("t2", "{}</action>", 'type="tool" name="x" colour="red"'), codes.UNKNOWN_ATTRIBUTE
    ),
    "bad mode": (
        _act("t3", "{}</action>", 'type="tool" name="x" mode="later"'), codes.BAD_ATTRIBUTE
    ),
    "duplicate id": (_act("ok0", '{"dup": 1}</action>'), codes.DUPLICATE_ID),
    "missing '>'": ('<action type="tool" name="x" id="b1"\n{"q": 1}</action>', codes.BAD_TAG),
    "unclosed thought": ("<thought>I will think but never close", None),
    "unclosed response": ('<response final="false">Working on it', None),
    "nested thought": ("<thought><thought>nested</thought>", codes.NESTED_TAG),
    "foreign syntax": ('<tool_call>{"name": "x"}</tool_call>', None),
    "raw specials": ('a < b && c > d "quoted" &amp; &bogus;', None),
    "runtime block": ('<action_result id="ok1" status="ok">x</action_result>', codes.RUNTIME_BLOCK),
}

# What intact params may hold raw. Entity text such as "&amp;" is left out on purpose: a raw
# body is XML character data, so it would be decoded (write "&amp;amp;" or use CDATA).
_PIECES = st.sampled_from(
    [" ", "a", "<", ">", "&", "& b", '"', "'", "\\", "é", "🚀", "\n", "</action>", "<b>",
     "]]>", "{", "}", "$ok0.x"]
)  # fmt: skip
_STRINGS = st.lists(_PIECES, max_size=10).map("".join)
_PARAMS = st.dictionaries(
    _STRINGS, st.one_of(_STRINGS, st.integers(), st.lists(_STRINGS, max_size=3)), max_size=4
)


def _codes(fault: str) -> set[str]:
    code = FRAGMENTS[fault][1]
    return set() if code is None else {code} if isinstance(code, str) else set(code)


def _intact(i: int, params: dict[str, object]) -> str:
    body = json.dumps(params, ensure_ascii=False)
    return f'<action type="tool" name="t" id="ok{i}">{body}</action>'


@settings(max_examples=200, deadline=None)
@given(
    params=st.lists(_PARAMS, min_size=1, max_size=6),
    faults=st.lists(st.sampled_from(sorted(FRAGMENTS)), min_size=1, max_size=8),
    seed=st.integers(0, 2**32),
)
def test_intact_actions_survive_any_mix_of_malformed_output(
    params: list[dict[str, object]], faults: list[str], seed: int
) -> None:
    rng = random.Random(seed)
    pieces = [_intact(i, p) for i, p in enumerate(params)]
    for fault in faults:
        pieces.insert(rng.randint(1, len(pieces)), FRAGMENTS[fault][0])
    text = "\n".join(pieces)
    events = parse(text)
    delivered = [e for e in events if isinstance(e, ActionDeclared) and e.id.startswith("ok")]
    assert [(e.id, e.params) for e in delivered] == [(f"ok{i}", p) for i, p in enumerate(params)]
    codes_seen = {e.code for e in events if isinstance(e, ParseError)}
    for fault in faults:
        assert codes_seen & _codes(fault) or not _codes(fault), fault
    assert merge_deltas(parse_chunks(random_split(text, rng))) == events


def test_each_fault_names_the_action_and_the_problem() -> None:
    for name, (fragment, _) in FRAGMENTS.items():
        if not _codes(name) or not fragment.startswith("<action "):
            continue
        text = '<action type="tool" name="t" id="ok0">{}</action>\n' + fragment
        errors = [e for e in parse(text) if isinstance(e, ParseError) and e.code in _codes(name)]
        assert errors, name
        if codes.BAD_TAG not in _codes(name):
            assert errors[0].action_id and errors[0].action_id in fragment, name
        assert errors[0].message and errors[0].snippet, name


def test_feed_never_raises_on_hostile_input() -> None:
    parser = Parser(max_body=16, max_pending=32)
    hostile: list[str | bytes] = [
        b"\xff\xfe\x00", "\x00" * 50, "<" * 100, "<action" * 20, "]]>" * 10, "&#99999999;",
        '<action type="' + "x" * 100, "</action>" * 5, b"\xf0\x9f", "\ud800", "<![CDATA[" * 3,
    ]  # fmt: skip
    for chunk in hostile:
        for event in parser.feed(chunk):
            assert event.__class__.__name__ in {
                "ThoughtDelta", "ResponseDelta", "ActionDeclared", "ParseError",
            }  # fmt: skip
            assert not (isinstance(event, ParseError) and event.code == codes.INTERNAL_ERROR)
    assert all(
        not (isinstance(e, ParseError) and e.code == codes.INTERNAL_ERROR) for e in parser.close()
    )
