"""Input handling: str and bytes, UTF-8 split across chunks, invalid bytes, close()."""

from __future__ import annotations

from cortex.kernel.protocol import ActionDeclared, Parser, ParseError, ThoughtDelta, codes
from tests.protocol.support import merge_deltas, parse_chunks, split

TEXT = (
    '<thought>日本語 🚀 é</thought><action type="tool" name="x" id="a">{"k": "😀"}</action>'
)


def test_multibyte_characters_split_across_byte_chunks() -> None:
    data = TEXT.encode()
    expected = merge_deltas(parse_chunks([TEXT]))
    for size in (1, 2, 3, 5):
        assert merge_deltas(parse_chunks(split(data, [size]))) == expected


def test_bytearray_and_memoryview_are_accepted() -> None:
    data = TEXT.encode()
    expected = merge_deltas(parse_chunks([TEXT]))
    assert merge_deltas(parse_chunks([bytearray(data)])) == expected
    assert merge_deltas(parse_chunks([memoryview(data)])) == expected


def test_invalid_utf8_becomes_replacement_characters() -> None:
    events = merge_deltas(parse_chunks([b"<thought>a\xff", b"b\xe2\x82", b"</thought>"]))
    assert events == [ThoughtDelta("a\ufffdb\ufffd")]


def test_str_after_an_unfinished_utf8_sequence() -> None:
    events = merge_deltas(parse_chunks([b"<thought>x\xf0\x9f", "y</thought>"]))
    assert events == [ThoughtDelta("x\ufffdy")]


def test_stream_ending_in_an_unfinished_utf8_sequence() -> None:
    events = merge_deltas(parse_chunks([b"<thought>x\xe6\x97"]))
    assert events[0] == ThoughtDelta("x\ufffd")
    assert [e.code for e in events[1:]] == [codes.UNCLOSED_TAG]  # type: ignore[union-attr]


def test_close_flushes_what_was_held_back() -> None:
    parser = Parser()
    assert parser.feed("<thought>a &am") == [ThoughtDelta("a ")]
    events = parser.close()
    assert events[0] == ThoughtDelta("&am")
    assert isinstance(events[1], ParseError) and events[1].code == codes.UNCLOSED_TAG


def test_feed_after_close_is_reported_and_close_twice_is_empty() -> None:
    parser = Parser()
    parser.feed('<action type="tool" name="x" id="a">{}</action>')
    parser.close()
    events = parser.feed("<thought>late</thought>")
    assert [e.code for e in events if isinstance(e, ParseError)] == [codes.CLOSED]
    assert parser.close() == []


def test_offset_and_context_follow_the_stream() -> None:
    parser = Parser()
    assert parser.context is None
    parser.feed("<thought>ab")
    assert (parser.context, parser.offset) == ("thought", 11)
    parser.feed('<action type="tool" name="x">{"a"')
    assert parser.context == "action"
    events = parser.feed(": 1}</action>")
    assert [e.parent for e in events if isinstance(e, ActionDeclared)] == ["thought"]
    assert parser.context == "thought"


def test_empty_chunks_change_nothing() -> None:
    parser = Parser()
    assert parser.feed("") == [] and parser.feed(b"") == []
    assert parser.feed("<response>hi") != []
