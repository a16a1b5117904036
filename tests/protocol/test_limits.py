"""Limits: body size and pending tag size are configurable; memory stays bounded."""

from __future__ import annotations

import pytest

from cortex.errors import ConfigError
from cortex.kernel.protocol import ActionDeclared, Parser, ParseError, codes
from tests.protocol.support import merge_deltas, parse, parse_chunks, split

ACTION = '<action type="tool" name="x" id="{id}">{body}</action>'


def _actions(events: list) -> dict[str, object]:
    return {e.id: e.params for e in events if isinstance(e, ActionDeclared)}


def _codes(events: list) -> list[str]:
    return [e.code for e in events if isinstance(e, ParseError)]


@pytest.mark.parametrize("extra", [0, 1])
def test_body_of_exactly_max_body_passes_and_one_more_char_fails(extra: int) -> None:
    body = '{"k": "' + "v" * (50 - 9 + extra) + '"}'
    assert len(body) == 50 + extra
    text = ACTION.format(id="a", body=body) + ACTION.format(id="b", body="{}")
    for sizes in ([len(text)], [1], [7, 3]):
        events = merge_deltas(parse_chunks(split(text, sizes), max_body=50))
        if extra:
            assert _codes(events) == [codes.BODY_TOO_LARGE]
            assert _actions(events) == {"b": {}}
        else:
            assert _codes(events) == []
            assert set(_actions(events)) == {"a", "b"}


@pytest.mark.parametrize(
    "body",
    [
        '{"k": "' + "x" * 200 + '"}',  # in a JSON string
        "<![CDATA[" + "y" * 200 + "]]>",  # in CDATA
        '{"k": "' + "z" * 100 + "</action>" + "z" * 100 + '"}',  # a closing tag in the string
    ],
)
def test_too_large_body_is_skipped_to_its_closing_tag_and_later_actions_survive(body: str) -> None:
    text = (
        "<thought>"
        + ACTION.format(id="big", body=body)
        + ACTION.format(id="after", body='{"ok": 1}')
        + "</thought>"
    )
    events = parse(text, max_body=64)
    errors = [e for e in events if isinstance(e, ParseError)]
    assert errors[0].code == codes.BODY_TOO_LARGE and errors[0].action_id == "big"
    assert _actions(events)["after"] == {"ok": 1}
    assert "big" not in _actions(events)


def test_opening_tag_longer_than_max_pending_is_dropped() -> None:
    long_attr = "n" * 100
    text = f'<action type="tool" name="x" id="a" note="{long_attr}">{{}}</action>'
    text += ACTION.format(id="b", body="{}")
    events = parse(text, max_pending=64)
    assert codes.BAD_TAG in _codes(events)
    assert _actions(events) == {"b": {}}
    assert _actions(parse(text, max_pending=256)) == {"a": {}, "b": {}}


@pytest.mark.parametrize("kwargs", [{"max_body": -1}, {"max_pending": 4}])
def test_nonsense_limits_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        Parser(**kwargs)


def _max_buffered(parser: Parser, head: str, filler: str, tail: str, total: int) -> int:
    """Feed ``head``, ``total`` chars of ``filler`` in 1 KiB chunks, ``tail``; peak buffered."""
    peak = 0
    parser.feed(head)
    chunk = filler * (1024 // len(filler))
    fed = 0
    while fed < total:
        parser.feed(chunk)
        fed += len(chunk)
        peak = max(peak, parser.buffered)
    parser.feed(tail)
    parser.close()
    return peak


@pytest.mark.parametrize(
    ("head", "filler", "tail"),
    [
        ('<action type="tool" name="x">{"k": "', "abc ", '"}</action>'),  # huge JSON string
        ('<action type="tool" name="x"><![CDATA[', "a<b]", "]]></action>"),  # huge CDATA
        ('<action type="tool" name="x">{"k": "', "</action>", '"}</action>'),  # strict mode
        ("<thought>", "thinking ", "</thought>"),  # huge thought: streamed, not held
        ("", "stray text ", ""),  # huge stray text: only a snippet is kept
        ('<action type="tool" name="x" note="', "nnnn", '">{}</action>'),  # endless tag
        ("<thought>", "&amp;<", "</thought>"),  # entities and stray '<'
    ],
)
def test_memory_stays_bounded_by_the_limits(head: str, filler: str, tail: str) -> None:
    max_body, max_pending = 4096, 512
    parser = Parser(max_body=max_body, max_pending=max_pending)
    peak = _max_buffered(parser, head, filler, tail, total=200_000)
    assert peak <= max_body + max_pending + 1024


def test_huge_body_within_a_large_limit_is_delivered_whole() -> None:
    body = '{"k": "' + "q" * 300_000 + '"}'
    parser = Parser(max_body=1_000_000)
    events = []
    for piece in split(ACTION.format(id="a", body=body), [4096]):
        events += parser.feed(piece)
    events += parser.close()
    assert _actions(events) == {"a": {"k": "q" * 300_000}}
