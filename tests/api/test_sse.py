"""The SSE helpers: frames, and a source paced with keep-alives that hands out everything it produced."""

from __future__ import annotations

import asyncio

import pytest

from cortex.adapters.http.sse import sse_frame, with_keep_alive


def test_frames_carry_id_event_and_one_data_line_per_line() -> None:
    assert sse_frame('{"a": 1}', event_id=7) == b'id: 7\ndata: {"a": 1}\n\n'
    assert sse_frame("one\ntwo", event="note") == b"event: note\ndata: one\ndata: two\n\n"


async def _count(n: int):
    for i in range(n):
        yield i


async def test_everything_a_quick_source_produced_is_handed_out() -> None:
    async def idle() -> None:
        raise AssertionError("not idle")

    for n in (0, 1, 5, 300):  # 300 > the queue size: the source waits for the reader
        assert [i async for i in with_keep_alive(_count(n), idle)] == list(range(n))


async def test_a_silent_source_gets_keep_alives_until_it_speaks() -> None:
    idles = 0
    spoke = asyncio.Event()

    async def idle() -> None:
        nonlocal idles
        idles += 1
        if idles == 3:
            spoke.set()

    async def source():
        await spoke.wait()
        yield "hello"

    assert [item async for item in with_keep_alive(source(), idle, every_s=0.01)] == ["hello"]
    assert idles == 3


async def test_the_sources_error_reaches_the_reader() -> None:
    async def broken():
        yield 1
        raise RuntimeError("gone")

    async def idle() -> None:
        pass

    got = []
    with pytest.raises(RuntimeError, match="gone"):
        async for item in with_keep_alive(broken(), idle):
            got.append(item)
    assert got == [1]
