"""Dispatch without delay: an action comes out of the feed() that delivers its closing tag."""

from __future__ import annotations

import random

import pytest

from cortex.kernel.protocol import ActionDeclared, Parser, ParseError, codes
from tests.protocol.support import golden_names, load_golden, random_split, split


def _closed_actions(name: str) -> set[str]:
    """Ids of the golden's actions that end with their own </action> (not implied or cut)."""
    golden = load_golden(name)
    warned = {
        e.action_id
        for e in golden.expected or []
        if isinstance(e, ParseError) and e.code == codes.UNCLOSED_TAG
    }
    return {
        e.id
        for e in golden.expected or []
        if isinstance(e, ActionDeclared) and e.id not in warned
    }


@pytest.mark.parametrize("name", [n for n in golden_names() if _closed_actions(n)])
@pytest.mark.parametrize("how", ["one char", "random"])
def test_action_is_returned_by_the_feed_holding_its_closing_bracket(name: str, how: str) -> None:
    golden = load_golden(name)
    closed = _closed_actions(name)
    pieces = split(golden.text, [1]) if how == "one char" else random_split(
        golden.text, random.Random(name)
    )
    parser = Parser(**golden.options)
    start = 0
    seen = set()
    for piece in pieces:
        end = start + len(piece)
        for event in parser.feed(piece):
            if isinstance(event, ActionDeclared) and event.id in closed:
                assert start < event.end <= end, f"{event.id} came late or early"
                assert golden.text[event.end - 1] == ">"
                seen.add(event.id)
        start = end
    parser.close()
    assert seen == closed


def test_nothing_before_the_last_bracket_and_the_action_with_it() -> None:
    parser = Parser()
    head = '<thought><action type="tool" name="x" id="a">{"q": "</action>"}</action'
    assert not [e for e in parser.feed(head) if isinstance(e, ActionDeclared)]
    done = parser.feed(">")
    assert [(e.id, e.params) for e in done if isinstance(e, ActionDeclared)] == [
        ("a", {"q": "</action>"})
    ]
