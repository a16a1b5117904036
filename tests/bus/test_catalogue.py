"""The published catalogue (docs/subjects.md) names every event type the code defines."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from cortex.bus import subjects
from cortex.bus.events import EVENT_TYPES, decode, encode
from cortex.errors import ConfigError

DOC = Path(__file__).resolve().parents[2] / "docs" / "subjects.md"


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_event_type_is_documented(event_type: str) -> None:
    assert f"`{event_type}`" in DOC.read_text()


def test_encode_decode_is_lossless() -> None:
    from cortex.bus.events import ActionCompleted, ActionCompletedData

    event = ActionCompleted(
        id="r1:1", run_id="r1", time=datetime(2026, 1, 1, tzinfo=timezone.utc), causation_id="r1:0",
        data=ActionCompletedData(action_id="a", result={"x": [1, 2]}, latency_ms=3.5),
    )
    assert decode(encode(event)) == event
    assert event.type == "action.completed"


@pytest.mark.parametrize("bad", ["", "a.b", "a b", "*", ">", "r/1"])
def test_run_ids_must_be_single_tokens(bad: str) -> None:
    with pytest.raises(ConfigError):
        subjects.run_events(bad)


def test_subject_helpers() -> None:
    assert subjects.run_event("r1", "action.completed") == "cortex.evt.r1.action.completed"
    assert subjects.parse_run_event("cortex.evt.r1.action.completed") == ("r1", "action.completed")
    assert subjects.work("tool", "gpu") == "cortex.work.tool.gpu"
    assert subjects.tail_filter(None) == "cortex.evt.>"
    assert subjects.tail_filter("r1") == "cortex.evt.r1.>"
    assert subjects.tail_filter("cortex.evt.*.run.*") == "cortex.evt.*.run.*"
