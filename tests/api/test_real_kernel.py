"""The API with the real kernel and llm worker processes (scripted model) behind it, through the openai client."""

from __future__ import annotations

from openai import AsyncOpenAI

from tests.api.conftest import TOKEN, Api
from tests.api.real_processes import real_kernel  # noqa: F401 - a fixture


async def test_openai_client_against_real_processes(api: Api, real_kernel: None) -> None:
    async with AsyncOpenAI(base_url=api.url + "/v1", api_key=TOKEN, max_retries=0, timeout=60) as client:
        greeting = await client.chat.completions.create(model="calc", messages=[{"role": "user", "content": "hello"}])
        assert greeting.choices[0].message.content == "Hi there!"
        assert greeting.usage.prompt_tokens > 0 and greeting.usage.completion_tokens > 0

        run_id = greeting.id.removeprefix("chatcmpl-")
        stream = await client.chat.completions.create(
            model="calc", messages=[{"role": "user", "content": "set it"}], metadata={"run_id": run_id}, stream=True,
        )
        chunks = [chunk async for chunk in stream]
    assert {chunk.id for chunk in chunks} == {greeting.id}
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == "The value is 42."
    assert len(pieces) >= 2 and not any("$" in piece for piece in pieces)
