"""The shared pieces of the HTTP providers: Retry-After, backoff, the retry loop, the SSE parser."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cortex.adapters.llm.base import StreamDelta
from cortex.adapters.llm.retry import (
    BackoffPolicy,
    Transient,
    backoff_delay,
    is_transient_status,
    parse_retry_after,
    retry_after_from_headers,
    retrying,
)
from cortex.adapters.llm.sse import SSEEvent, SSEParser, aiter_sse
from cortex.errors import RateLimited

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_retry_after_seconds_dates_and_garbage() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(format_datetime(NOW + timedelta(seconds=30), usegmt=True), NOW) == 30.0
    assert parse_retry_after(format_datetime(NOW - timedelta(seconds=30), usegmt=True), NOW) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert retry_after_from_headers({"retry-after-ms": "250", "retry-after": "9"}) == 0.25


@pytest.mark.parametrize(
    "status, transient",
    [
        (429, True),
        (500, True),
        (503, True),
        (529, True),
        (408, True),
        (501, False),
        (400, False),
        (401, False),
    ],
)
def test_transient_statuses(status: int, transient: bool) -> None:
    assert is_transient_status(status) is transient


@given(st.integers(1, 12), st.floats(0, 1), st.one_of(st.none(), st.floats(0, 100)))
def test_backoff_is_bounded_and_never_earlier_than_retry_after(
    failures: int, rand: float, retry_after: float | None
) -> None:
    policy = BackoffPolicy(base_s=0.5, cap_s=8.0)
    delay = backoff_delay(policy, failures, retry_after, lambda: rand)
    ceiling = min(policy.cap_s, policy.base_s * 2 ** (failures - 1))
    assert delay >= ceiling / 2
    assert delay <= max(ceiling, retry_after or 0.0)
    if retry_after is not None:
        assert delay >= retry_after


async def test_retrying_sleeps_as_told_then_gives_up() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    async def attempt() -> AsyncGenerator[StreamDelta | Transient, None]:
        calls.append(1)
        yield Transient("HTTP 429", retry_after_s=2.0)

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    policy = BackoffPolicy(max_attempts=3, base_s=0.1, cap_s=0.1)
    with pytest.raises(RateLimited, match="HTTP 429; gave up after 3 attempts"):
        async for _ in retrying(attempt, policy, what="test", sleep=sleep):
            pass
    assert len(calls) == 3
    assert sleeps == [2.0, 2.0]


async def test_retrying_refuses_a_retry_after_beyond_the_limit() -> None:
    async def attempt() -> AsyncGenerator[StreamDelta | Transient, None]:
        yield Transient("HTTP 429", retry_after_s=3600.0)

    with pytest.raises(RateLimited, match="retry after 3600 s"):
        async for _ in retrying(attempt, BackoffPolicy(max_retry_after_s=60.0), what="test"):
            pass


def test_sse_parser_follows_the_field_rules() -> None:
    parser = SSEParser()
    lines = [": comment", "event: message_start", 'data: {"a":', "data:1}", "", "data: [DONE]", ""]
    events = [e for e in map(parser.feed, lines) if e is not None]
    assert events == [SSEEvent("message_start", '{"a":\n1}'), SSEEvent("message", "[DONE]")]


async def test_sse_stream_without_a_final_blank_line_still_yields_its_last_event() -> None:
    async def lines() -> AsyncIterator[str]:
        for line in ("event: ping", "data: {}", "", "data: last"):
            yield line

    assert [e async for e in aiter_sse(lines())] == [
        SSEEvent("ping", "{}"),
        SSEEvent("message", "last"),
    ]
