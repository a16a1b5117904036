"""Random parser inputs and the invariants every run must keep (used by tests and bench/).

Inputs come in three kinds, drawn from a seeded ``random.Random``: random bytes, a soup of
protocol tokens and text, and golden transcripts mutated (spans deleted, duplicated, swapped,
tokens inserted, the end cut off). Each is fed in random chunks (as str or as UTF-8 bytes),
sometimes with tiny limits, and checked: nothing escapes ``feed``/``close``, no
``internal_error``, only known event types, unique action ids, offsets inside the input,
and the same merged events as when fed in one piece.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cortex.kernel.protocol import EVENT_TYPES, ActionDeclared, Parser, ParseError, codes
from tests.protocol.support import GOLDEN, merge_deltas, random_split

TOKENS = (
    "<thought>", "</thought>", '<action type="tool" name="x">',
    '<action type="tool" name="x" id="a">',
    '<action type="llm" name="y" id="b" mode="sync" depends_on="a">', "</action>", "<action",
    '<response final="true">', '<response final="false">', "</response>", "<response>",
    "<![CDATA[", "]]>", '"', "\\", "\\\"", "{", "}", "[", "]", ":", ",", "<", ">", "&", "&amp;",
    "&lt;", "&#x41;", "&#", "&#60;", "\n", " ", "\t", "é", "😀", "日本", "$a.b[0]", "</", "/>",
    '<action_result id="a" status="ok">', "</action_result>", '<context feed="f">', "</context>",
    "'", "=", '="', "\x00", "\r", "\ufeff", "true", "null", "1.5e3", '{"k": "v"}',
    '{"q": "</action>"}', "</action >", "<thought/>", "id=", "<b>", "</b>", "<!--", "-->",
)  # fmt: skip


def corpus() -> list[str]:
    """The golden transcripts, the seeds for mutation."""
    return [p.read_text(encoding="utf-8") for p in sorted(GOLDEN.glob("*.txt"))]


def _mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 5)):
        n = len(text)
        i, j = sorted((rng.randint(0, n), rng.randint(0, n)))
        op = rng.randrange(6)
        if op == 0:
            text = text[:i] + text[j:]  # delete a span
        elif op == 1:
            text = text[:j] + text[i:j] + text[j:]  # duplicate a span
        elif op in (2, 3):
            text = text[:i] + rng.choice(TOKENS) + text[i:]  # insert a token
        elif op == 4:
            k = rng.randint(0, n)
            text = text[:i] + text[k:] + text[i:k] if i < k else text  # move a span
        else:
            text = text[: rng.randint(0, n)]  # truncate
    return text


def _soup(rng: random.Random) -> str:
    words = ("the", "plan", "x", "42", "ok", "</actio", "<respo", "thought", "action")
    return "".join(
        rng.choice(TOKENS) if rng.random() < 0.7 else rng.choice(words)
        for _ in range(rng.randint(1, 60))
    )


def inputs(seed: int, count: int, seeds: list[str]) -> Iterator[str | bytes]:
    """``count`` fuzz inputs from ``seed``: random bytes, token soup, mutated transcripts."""
    rng = random.Random(seed)
    for _ in range(count):
        kind = rng.random()
        if kind < 0.15:
            yield rng.randbytes(rng.randint(0, 300))
        elif kind < 0.45:
            yield _soup(rng)
        else:
            text = _mutate(rng.choice(seeds), rng)
            yield text.encode("utf-8", "surrogatepass") if rng.random() < 0.2 else text


@dataclass(frozen=True)
class Failure:
    """An input that broke an invariant."""

    data: str | bytes
    options: dict[str, Any]
    problem: str


def _run(pieces: list[Any], options: dict[str, Any]) -> list[Any]:
    parser = Parser(**options)
    events: list[Any] = []
    for piece in pieces:
        events += parser.feed(piece)
    events += parser.close()
    return events


def check(data: str | bytes, rng: random.Random) -> Failure | None:
    """Parse ``data`` in random chunks and in one piece; the broken invariant, if any."""
    options: dict[str, Any] = {}
    if rng.random() < 0.2:
        options = {"max_body": rng.choice((0, 8, 64)), "max_pending": rng.choice((32, 64))}
    if rng.random() < 0.1:
        options["model_output"] = False
    try:
        events = _run(random_split(data, rng, max_size=rng.choice((1, 4, 16, 64))), options)
        whole = _run([data], options)
    except Exception as exc:  # noqa: BLE001 - any escape is the failure being looked for
        return Failure(data, options, f"{type(exc).__name__} escaped: {exc}")
    length = len(data.decode("utf-8", "replace")) if isinstance(data, bytes) else len(data)
    ids: set[str] = set()
    for event in events:
        if not isinstance(event, EVENT_TYPES):
            return Failure(data, options, f"unknown event {event!r}")
        if isinstance(event, ParseError):
            if event.code == codes.INTERNAL_ERROR:
                return Failure(data, options, event.message)
            if not 0 <= event.offset <= length:
                return Failure(data, options, f"offset out of range: {event!r}")
        elif isinstance(event, ActionDeclared):
            if event.id in ids:
                return Failure(data, options, f"action id delivered twice: {event.id}")
            ids.add(event.id)
            if not 0 <= event.position < event.end <= length:
                return Failure(data, options, f"position out of range: {event!r}")
    if merge_deltas(events) != merge_deltas(whole):
        return Failure(data, options, "events depend on how the input was split")
    return None


def run(seed: int, count: int) -> tuple[int, list[Failure]]:
    """Check ``count`` inputs from ``seed``; returns characters parsed and the failures."""
    rng = random.Random(seed ^ 0x5EED)
    failures: list[Failure] = []
    chars = 0
    for data in inputs(seed, count, corpus()):
        chars += len(data)
        failure = check(data, rng)
        if failure is not None:
            failures.append(failure)
    return chars, failures
