"""Chunking invariance: however the input is split, the merged events are the same."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocol.support import golden_names, load_golden, merge_deltas, parse_chunks, split


@pytest.mark.parametrize("name", golden_names())
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_rechunked_golden_gives_the_same_events(name: str, data: st.DataObject) -> None:
    golden = load_golden(name)
    as_bytes = data.draw(st.booleans(), label="bytes")
    payload = golden.text.encode() if as_bytes else golden.text
    sizes = data.draw(st.lists(st.integers(1, 24), min_size=1, max_size=32), label="sizes")
    events = parse_chunks(split(payload, sizes), **golden.options)
    assert merge_deltas(events) == golden.expected


@pytest.mark.parametrize("name", golden_names())
def test_every_two_way_split_gives_the_same_events(name: str) -> None:
    golden = load_golden(name)
    text = golden.text
    step = max(1, len(text) // 150)  # every split point of short goldens, a sample of long ones
    for cut in range(1, len(text), step):
        events = parse_chunks([text[:cut], text[cut:]], **golden.options)
        assert merge_deltas(events) == golden.expected, f"split at {cut}: {text[cut - 10 : cut]!r}|"


def test_text_streams_as_deltas_not_buffered_to_the_end() -> None:
    from cortex.kernel.protocol import Parser, ResponseDelta, ThoughtDelta

    parser = Parser()
    assert parser.feed("<thought>first ") == [ThoughtDelta("first ")]
    assert parser.feed("second") == [ThoughtDelta("second")]
    assert parser.feed('</thought><response final="true">Hel') == [ResponseDelta("Hel", True)]
    assert parser.feed("lo") == [ResponseDelta("lo", True)]
