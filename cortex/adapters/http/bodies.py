"""Request bodies of the HTTP API (pydantic models) and reading them with 400/422 errors that say what is wrong."""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cortex.adapters.http.errors import api_error

M = TypeVar("M", bound=BaseModel)


class RunCreate(BaseModel):
    """``POST /api/runs``: start a run of an applied agent."""

    model_config = ConfigDict(extra="forbid")

    agent: str = Field(min_length=1, description="name of an applied agent")
    message: str = Field(description="the first user message")
    variables: dict[str, Any] = Field(default_factory=dict, description="run variables (`$vars.name`)")
    run_id: str | None = Field(default=None, description="choose the run id (letters, digits, - and _)")


class MessageCreate(BaseModel):
    """``POST /api/runs/{id}/messages``: a further user message."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)


class CancelCreate(BaseModel):
    """``POST /api/runs/{id}/cancel``: cancel a run (the body is optional)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = "cancelled by user"


class ContentPart(BaseModel):
    """One part of an OpenAI message's content list (only text parts are read)."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessageIn(BaseModel):
    """One message of an OpenAI chat completion request."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """The message's text (text parts joined)."""
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    """OpenAI ``stream_options``."""

    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionCreate(BaseModel):
    """``POST /v1/chat/completions``: OpenAI-compatible; ``model`` is the agent name.

    Other OpenAI parameters (temperature, max_tokens, ...) are accepted and ignored: the agent's
    manifest decides them.
    """

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, description="the agent name")
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    metadata: dict[str, str] | None = Field(
        default=None, description="`run_id`: continue that run instead of starting a new one"
    )
    user: str | None = None


class RunAccepted(BaseModel):
    """What the run endpoints answer: the run id and the stream sequence of the published event."""

    run_id: str
    seq: int


class ErrorDetail(BaseModel):
    """The error object."""

    message: str
    type: str
    code: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx body: ``{"error": {"message", "type", "code"}}``."""

    error: ErrorDetail


def describe(error: ValidationError) -> tuple[str, str]:
    """(code, message) for the first validation problem, e.g. ``missing_field``, ``field 'agent' is required``."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    if first["type"] == "missing":
        return "missing_field", f"field '{where}' is required"
    if first["type"] == "extra_forbidden":
        return "unknown_field", f"field '{where}' is not allowed"
    more = f" (and {len(error.errors()) - 1} more problems)" if len(error.errors()) > 1 else ""
    return "invalid_field", f"field '{where}': {first['msg']}{more}"


async def read_body(request: web.Request, model: type[M], *, optional: bool = False) -> M:
    """Parse the JSON body as ``model``: 400 if it is not JSON, 422 if a field is missing or wrong."""
    raw = await request.read()
    if not raw.strip() and optional:
        return model()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise api_error(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise api_error(422, "the request body must be a JSON object", code="invalid_body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        code, message = describe(exc)
        raise api_error(422, message, code=code) from None
