"""Helpers for the parser tests: feeding in chunks, merging deltas, reading golden files."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from cortex.kernel.protocol import Event, Parser, ResponseDelta, ThoughtDelta

GOLDEN = Path(__file__).parent / "golden"


def merge_deltas(events: Iterable[Event]) -> list[Event]:
    """Join adjacent thought deltas, and adjacent response deltas with the same ``final``."""
    out: list[Event] = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, ThoughtDelta) and isinstance(last, ThoughtDelta):
            out[-1] = ThoughtDelta(last.text + event.text)
        elif (
            isinstance(event, ResponseDelta)
            and isinstance(last, ResponseDelta)
            and last.final == event.final
        ):
            out[-1] = ResponseDelta(last.text + event.text, event.final)
        else:
            out.append(event)
    return out


def parse_chunks(chunks: Iterable[str | bytes], **options: Any) -> list[Event]:
    """Every event from feeding ``chunks`` in order and closing (deltas not merged)."""
    parser = Parser(**options)
    events: list[Event] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.close()
    return events


def parse(text: str, **options: Any) -> list[Event]:
    """Merged events of ``text`` fed in one piece."""
    return merge_deltas(parse_chunks([text], **options))


def split(data: str | bytes, sizes: Sequence[int]) -> list[Any]:
    """``data`` cut into consecutive pieces of the given sizes (cycled; each at least 1)."""
    pieces = []
    i = k = 0
    while i < len(data):
        step = max(1, sizes[k % len(sizes)]) if sizes else len(data)
        pieces.append(data[i : i + step])
        i += step
        k += 1
    return pieces


def random_split(data: str | bytes, rng: random.Random, max_size: int = 12) -> list[Any]:
    """``data`` cut at random places (pieces of 1..max_size)."""
    return split(data, [rng.randint(1, max_size) for _ in range(64)])


@dataclass(frozen=True)
class Golden:
    """One golden transcript: its input, parser options and expected (merged) events."""

    name: str
    text: str
    options: dict[str, Any]
    expected: list[Event] | None

    @property
    def expected_path(self) -> Path:
        """Where the expected events live."""
        return GOLDEN / f"{self.name}.json"


_DECODER = msgspec.json.Decoder(list[Event])


def load_golden(name: str) -> Golden:
    """Read ``golden/<name>.txt`` and its ``.json`` (options and expected events) if present."""
    text = (GOLDEN / f"{name}.txt").read_text(encoding="utf-8")
    path = GOLDEN / f"{name}.json"
    options: dict[str, Any] = {}
    expected = None
    if path.exists():
        doc = json.loads(path.read_text(encoding="utf-8"))
        options = doc.get("options", {})
        expected = _DECODER.decode(json.dumps(doc["events"]))
    return Golden(name, text, options, expected)


def golden_names() -> list[str]:
    """Names of all golden transcripts."""
    return sorted(p.stem for p in GOLDEN.glob("*.txt"))


def encode_events(events: Sequence[Event]) -> list[Any]:
    """Events as plain JSON values (the golden file format)."""
    return json.loads(msgspec.json.encode(list(events)))
