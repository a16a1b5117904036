"""Golden transcripts: realistic and malformed model output with their expected events."""

from __future__ import annotations

import pytest

from cortex.kernel.protocol import ActionDeclared, ParseError, codes
from tests.protocol.support import (
    golden_names,
    load_golden,
    merge_deltas,
    parse,
    parse_chunks,
    split,
)

NAMES = golden_names()


def test_there_are_at_least_thirty_goldens_each_with_expectations() -> None:
    assert len(NAMES) >= 30
    missing = [n for n in NAMES if load_golden(n).expected is None]
    assert not missing, f"goldens without expected events (run tests.protocol.regen): {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_golden_in_one_piece(name: str) -> None:
    golden = load_golden(name)
    assert parse(golden.text, **golden.options) == golden.expected


@pytest.mark.parametrize("name", NAMES)
def test_golden_one_character_at_a_time(name: str) -> None:
    golden = load_golden(name)
    events = parse_chunks(split(golden.text, [1]), **golden.options)
    assert merge_deltas(events) == golden.expected


@pytest.mark.parametrize("name", NAMES)
def test_golden_one_byte_at_a_time(name: str) -> None:
    golden = load_golden(name)
    events = parse_chunks(split(golden.text.encode(), [1]), **golden.options)
    assert merge_deltas(events) == golden.expected


@pytest.mark.parametrize("name", NAMES)
def test_golden_positions_point_into_the_input(name: str) -> None:
    golden = load_golden(name)
    text = golden.text
    for event in golden.expected or []:
        if isinstance(event, ActionDeclared):
            assert text.startswith("<action", event.position)
            assert event.position < event.end <= len(text)
            assert event.raw in text[event.position : event.end]
        elif isinstance(event, ParseError):
            assert 0 <= event.offset <= len(text)


def test_goldens_cover_every_error_code_the_model_can_cause() -> None:
    seen = {
        e.code
        for n in NAMES
        for e in load_golden(n).expected or []
        if isinstance(e, ParseError)
    }
    not_from_output = {codes.CLOSED, codes.INTERNAL_ERROR}
    assert set(codes.DESCRIPTIONS) - not_from_output <= seen
