"""``POST /v1/chat/completions``: the OpenAI chat API on top of runs (``model`` is the agent name).

The last user message starts a run, or continues the run named by ``metadata.run_id``. The
answer is the run's final response; usage is the run's token usage. The run id is in the
``X-Cortex-Run-Id`` header and in the completion id (``chatcmpl-<run_id>``).
"""

from __future__ import annotations

import json
import time
from contextlib import aclosing
from typing import Any

from aiohttp import web

from cortex.adapters.http.bodies import ChatCompletionCreate, read_body
from cortex.adapters.http.errors import api_error, error_body
from cortex.adapters.http.runs_api import open_run
from cortex.adapters.http.sse import KEEP_ALIVE, open_stream, sse_frame, with_keep_alive
from cortex.adapters.http.state import BUS
from cortex.bus.client import Bus
from cortex.bus.events import Event, RunCompleted, RunFailed
from cortex.errors import ManifestError
from cortex.runs import TERMINAL, AnswerStream, follow_run, send_message, start_run

NO_RETRY = {"x-should-retry": "false"}  # OpenAI clients must not retry a run that ended badly


def completion_id(run_id: str) -> str:
    """The OpenAI id of a run's completion."""
    return f"chatcmpl-{run_id}"


def usage_dict(event: RunCompleted) -> dict[str, int]:
    """OpenAI usage from a run's usage."""
    usage = event.data.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def outcome_error(event: Event) -> dict[str, Any]:
    """The error body for a run that failed or was cancelled."""
    if isinstance(event, RunFailed):
        return error_body(500, f"the run failed: {event.data.reason}", event.data.code, "run_failed")
    return error_body(500, f"the run was cancelled: {event.data.reason}", "run_cancelled", "run_cancelled")


def chat_completion(run_id: str, model: str, created: int, event: RunCompleted) -> dict[str, Any]:
    """A ``chat.completion`` object for a completed run."""
    return {
        "id": completion_id(run_id), "object": "chat.completion", "created": created, "model": model,
        "choices": [{
            "index": 0, "finish_reason": "stop", "logprobs": None,
            "message": {"role": "assistant", "content": event.data.response, "refusal": None},
        }],
        "usage": usage_dict(event),
        "system_fingerprint": None,
    }


def chunk(run_id: str, model: str, created: int, delta: dict[str, Any], finish_reason: str | None = None,
          **extra: Any) -> dict[str, Any]:
    """A ``chat.completion.chunk`` object."""
    choices = [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
    return {"id": completion_id(run_id), "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": choices, **extra}


def last_user_message(body: ChatCompletionCreate) -> str:
    """The text of the last user message; 422 if there is none."""
    for message in reversed(body.messages):
        if message.role == "user":
            return message.text()
    raise api_error(422, "messages must contain a message with role 'user'", code="missing_user_message")


async def begin(bus: Bus, body: ChatCompletionCreate) -> tuple[str, int | None]:
    """Start or continue the run; return its id and the sequence to follow it from (None: its start)."""
    message = last_user_message(body)
    run_id = (body.metadata or {}).get("run_id")
    if not run_id:
        try:
            return await start_run(bus, body.model, message), None
        except ManifestError:
            raise api_error(404, f"the model {body.model!r} is not an applied agent; "
                                 "apply its manifest with `cortex apply`", code="model_not_found") from None
    await open_run(bus, run_id)
    return run_id, await send_message(bus, run_id, message) + 1


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Answer like OpenAI's chat completions, streaming (``stream: true``) or not."""
    body = await read_body(request, ChatCompletionCreate)
    bus = request.app[BUS]
    run_id, start_seq = await begin(bus, body)
    created = int(time.time())
    headers = {"X-Cortex-Run-Id": run_id}
    if body.stream:
        return await _stream(request, body, run_id, start_seq, created, headers)
    async with aclosing(follow_run(bus, run_id, start_seq=start_seq)) as events:
        async for event in events:
            if isinstance(event, RunCompleted):
                return web.json_response(chat_completion(run_id, body.model, created, event), headers=headers)
            if event.type in TERMINAL:
                return web.json_response(outcome_error(event), status=500, headers={**headers, **NO_RETRY})
    raise api_error(503, "the event stream ended before the run did", code="bus_unavailable")


async def _stream(request: web.Request, body: ChatCompletionCreate, run_id: str, start_seq: int | None,
                  created: int, headers: dict[str, str]) -> web.StreamResponse:
    response = await open_stream(request, headers)

    async def send(obj: dict[str, Any] | str) -> None:
        await response.write(sse_frame(obj if isinstance(obj, str) else json.dumps(obj)))

    await send(chunk(run_id, body.model, created, {"role": "assistant", "content": ""}))
    answer = AnswerStream()
    source = follow_run(request.app[BUS], run_id, start_seq=start_seq)
    try:
        async with aclosing(with_keep_alive(source, lambda: response.write(KEEP_ALIVE))) as events:
            async for event in events:
                if event.type == "response.delta":
                    text = answer.delta(event.data.turn_id, event.data.text, event.data.final)
                    if text:
                        await send(chunk(run_id, body.model, created, {"content": text}))
                elif isinstance(event, RunCompleted):
                    rest = answer.completed(event.data.response)
                    if rest:
                        await send(chunk(run_id, body.model, created, {"content": rest}))
                    await send(chunk(run_id, body.model, created, {}, "stop"))
                    if body.stream_options and body.stream_options.include_usage:
                        usage_chunk = chunk(run_id, body.model, created, {}, usage=usage_dict(event))
                        usage_chunk["choices"] = []
                        await send(usage_chunk)
                    await send("[DONE]")
                elif event.type in TERMINAL:
                    await send(outcome_error(event))
    except ConnectionResetError:
        pass  # the client left; the run goes on
    return response
