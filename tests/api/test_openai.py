"""``POST /v1/chat/completions`` with the real ``openai`` package as the client, streaming and not."""

from __future__ import annotations

import openai
import pytest
from openai import AsyncOpenAI

from cortex.bus.client import Bus
from tests.api.conftest import TOKEN, Api
from tests.api.played_kernel import PlayedKernel


@pytest.fixture
async def client(api: Api):
    """An OpenAI client pointed at the API (no retries, so a retry would show as a second run)."""
    async with AsyncOpenAI(base_url=api.url + "/v1", api_key=TOKEN, max_retries=0) as openai_client:
        yield openai_client


async def test_a_completion_is_the_runs_final_response_with_usage(client: AsyncOpenAI, bus: Bus,
                                                                  kernel: PlayedKernel) -> None:
    completion = await client.chat.completions.create(
        model="echo", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}],
    )
    assert completion.object == "chat.completion" and completion.model == "echo"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "You said: hi there"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (11, 7, 18)
    run_id = completion.id.removeprefix("chatcmpl-")
    assert (await bus.read_run(run_id)).events[0].data.message == "hi there"


async def test_metadata_run_id_continues_the_run(client: AsyncOpenAI, bus: Bus, kernel: PlayedKernel) -> None:
    first = await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "one"}])
    run_id = first.id.removeprefix("chatcmpl-")
    raw = await client.chat.completions.with_raw_response.create(
        model="echo", metadata={"run_id": run_id},
        messages=[{"role": "user", "content": "one"}, {"role": "assistant", "content": "You said: one"},
                  {"role": "user", "content": [{"type": "text", "text": "two"}]}],
    )
    assert raw.headers["X-Cortex-Run-Id"] == run_id
    second = raw.parse()
    assert second.id == first.id and second.choices[0].message.content == "You said: two"
    messages = [e.data.text for e in (await bus.read_run(run_id)).events if e.type == "message.received"]
    assert messages == ["two"]


async def test_streaming_sends_the_answer_as_chunks_then_done(client: AsyncOpenAI, kernel: PlayedKernel) -> None:
    stream = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "stream me"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: stream me"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2  # streamed, not one block
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 18


async def test_streaming_holds_back_references_until_they_are_resolved(client: AsyncOpenAI,
                                                                      kernel: PlayedKernel) -> None:
    stream = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "ref please"}], stream=True,
    )
    pieces = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == "The time is 12:00."
    assert not any("$" in piece for piece in pieces)


async def test_unknown_model_is_404(client: AsyncOpenAI, kernel: PlayedKernel) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "model_not_found" and "ghost" in info.value.message


async def test_no_user_message_is_422(client: AsyncOpenAI, kernel: PlayedKernel) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as info:
        await client.chat.completions.create(model="echo", messages=[{"role": "system", "content": "x"}])
    assert info.value.code == "missing_user_message"


async def test_a_failed_run_is_an_error_and_not_retried(api: Api, kernel: PlayedKernel) -> None:
    async with AsyncOpenAI(base_url=api.url + "/v1", api_key=TOKEN, max_retries=2) as retrying:
        with pytest.raises(openai.InternalServerError) as info:
            await retrying.chat.completions.create(model="echo", messages=[{"role": "user", "content": "fail now"}])
    assert info.value.code == "turn_failed" and "scripted failure" in info.value.message
    assert kernel.answered.count("fail now") == 1


async def test_a_failed_run_while_streaming_raises(client: AsyncOpenAI, kernel: PlayedKernel) -> None:
    stream = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "fail please"}], stream=True,
    )
    with pytest.raises(openai.APIError, match="scripted failure"):
        async for _chunk in stream:
            pass


async def test_a_wrong_api_key_is_401(api: Api, kernel: PlayedKernel) -> None:
    async with AsyncOpenAI(base_url=api.url + "/v1", api_key="wrong", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError):
            await wrong.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])


async def test_continuing_an_unknown_run_is_404(client: AsyncOpenAI, kernel: PlayedKernel) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(model="echo", metadata={"run_id": "nobody"},
                                             messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "run_not_found"
