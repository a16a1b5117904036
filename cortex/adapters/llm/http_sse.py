"""POST a JSON request and stream SSE back, mapping httpx and HTTP errors in one place.

Shared by the OpenAI-compatible and Anthropic providers: 401/403 is a bad key, 404 (or a
"model not found" body) an unknown model, a refused connection an unreachable endpoint,
408/429/5xx a ``Transient`` for ``retry.retrying``; everything else a one-line ``ProviderError``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import httpx
import msgspec

from cortex.adapters.llm.retry import Transient, is_transient_status, retry_after_from_headers
from cortex.adapters.llm.sse import SSEEvent, aiter_sse
from cortex.errors import EndpointUnreachable, ModelNotFound, ProviderAuthError, ProviderError

_MODEL_MISSING = re.compile(
    r"model_not_found|not_found_error|unknown model|invalid model|"
    r"model\b.{0,80}\b(not found|does not exist|not exist|unknown|not available)",
    re.IGNORECASE | re.DOTALL,
)


class HttpTarget(msgspec.Struct, frozen=True, kw_only=True):
    """Where requests go and how they are labelled in error lines."""

    provider: str
    base_url: str
    url: str
    connect_timeout_s: float = 10.0
    read_timeout_s: float | None = None


def one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace and cut to ``limit`` characters, so an error stays one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def error_detail(body: bytes) -> str:
    """The human part of an error body: ``error.message``, ``detail`` or the raw text."""
    try:
        data: Any = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return one_line(body.decode("utf-8", "replace"))
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            for key in ("message", "detail", "msg"):
                if err.get(key):
                    return one_line(str(err[key]))
        elif isinstance(err, str):
            return one_line(err)
        if data.get("detail"):
            return one_line(str(data["detail"]))
    return one_line(body.decode("utf-8", "replace"))


def status_error(
    target: HttpTarget, model: str, status: int, headers: httpx.Headers, body: bytes
) -> Transient | ProviderError:
    """Map a non-2xx answer to a ``Transient`` (retry) or the ``ProviderError`` to raise."""
    detail = error_detail(body)
    answer = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
    if status in (401, 403):
        return ProviderAuthError(
            f"{target.provider}: bad or missing API key for {target.base_url} ({answer})"
        )
    raw = body.decode("utf-8", "replace")
    if status == 404 or (status in (400, 422) and _MODEL_MISSING.search(raw)):
        return ModelNotFound(
            f"{target.provider}: model {model!r} not found at {target.url} ({answer})"
        )
    if is_transient_status(status):
        return Transient(answer, retry_after_from_headers(headers))
    return ProviderError(f"{target.provider}: {target.url} rejected the request ({answer})")


async def post_sse(
    client: httpx.AsyncClient,
    target: HttpTarget,
    *,
    model: str,
    headers: dict[str, str],
    payload: dict[str, Any],
    read_timeout_s: float,
) -> AsyncGenerator[SSEEvent | Transient, None]:
    """POST ``payload``; yield SSE events or one ``Transient`` (closing it closes the response)."""
    timeout = httpx.Timeout(
        target.read_timeout_s or read_timeout_s, connect=target.connect_timeout_s
    )
    try:
        async with client.stream(
            "POST", target.url, headers=headers, json=payload, timeout=timeout
        ) as response:
            if response.status_code >= 300:
                outcome = status_error(
                    target, model, response.status_code, response.headers, await response.aread()
                )
                if isinstance(outcome, ProviderError):
                    raise outcome
                yield outcome
                return
            async with aclosing(aiter_sse(response.aiter_lines())) as events:
                async for event in events:
                    yield event
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        reason = one_line(str(exc)) or type(exc).__name__
        raise EndpointUnreachable(
            f"{target.provider}: cannot reach {target.url} ({reason})"
        ) from exc
    except httpx.ReadTimeout as exc:
        raise ProviderError(
            f"{target.provider}: no data from {target.url} for {timeout.read:.0f} s (read timeout)"
        ) from exc
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        yield Transient(f"connection to {target.url} dropped ({type(exc).__name__})")
    except httpx.HTTPError as exc:
        raise ProviderError(
            f"{target.provider}: request to {target.url} failed ({type(exc).__name__}: {exc})"
        ) from exc
