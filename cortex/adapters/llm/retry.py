"""Retries with exponential backoff and jitter, honouring Retry-After (shared by HTTP providers).

An attempt is an async iterator of ``StreamDelta`` that may instead yield one ``Transient``
(a 429, a 5xx, an overloaded event, a dropped connection) and stop. ``retrying`` tries again
after a backoff while nothing has been streamed yet; once output has gone to the caller a
transient failure is a ``ProviderError``, since the caller cannot take the text back.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import msgspec

from cortex.adapters.llm.base import StreamDelta
from cortex.errors import ProviderError, RateLimited

log = logging.getLogger(__name__)

_NOT_TRANSIENT_5XX = frozenset({501, 505})


class BackoffPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How often and how patiently a provider retries 429, 5xx and overloaded answers."""

    max_attempts: int = 4
    base_s: float = 0.5
    cap_s: float = 20.0
    max_retry_after_s: float = 60.0


class Transient(msgspec.Struct, frozen=True):
    """An attempt failed in a way worth retrying; ``retry_after_s`` is the server's wish."""

    reason: str
    retry_after_s: float | None = None


def is_transient_status(status: int) -> bool:
    """Whether an HTTP status is worth retrying (408, 429 and most 5xx, including 529)."""
    return status in (408, 429) or (500 <= status <= 599 and status not in _NOT_TRANSIENT_5XX)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value: delta-seconds or an HTTP date; None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """Retry-After from response headers (``retry-after-ms`` first, as OpenAI sends it)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


def backoff_delay(
    policy: BackoffPolicy,
    failures: int,
    retry_after_s: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Delay after ``failures`` failed attempts: "equal jitter", never below Retry-After."""
    ceiling = min(policy.cap_s, policy.base_s * 2.0 ** (failures - 1))
    jittered = ceiling / 2 + rand() * ceiling / 2
    if retry_after_s is None:
        return jittered
    return max(retry_after_s, jittered)


async def retrying(
    attempt: Callable[[], AsyncGenerator[StreamDelta | Transient, None]],
    policy: BackoffPolicy,
    *,
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> AsyncGenerator[StreamDelta, None]:
    """Run ``attempt`` until it streams to the end, retrying transient failures before output."""
    attempts = max(1, policy.max_attempts)
    for failures in range(1, attempts + 1):
        produced = False
        transient: Transient | None = None
        async with aclosing(attempt()) as items:
            async for item in items:
                if isinstance(item, Transient):
                    transient = item
                    break
                produced = produced or bool(item.text)
                yield item
        if transient is None:
            return
        if produced:
            raise ProviderError(f"{what} failed mid-stream: {transient.reason}")
        if failures == attempts:
            raise RateLimited(f"{what}: {transient.reason}; gave up after {failures} attempts")
        if (
            transient.retry_after_s is not None
            and transient.retry_after_s > policy.max_retry_after_s
        ):
            raise RateLimited(
                f"{what}: {transient.reason}; server asks to retry after "
                f"{transient.retry_after_s:.0f} s (more than {policy.max_retry_after_s:.0f} s)"
            )
        delay = backoff_delay(policy, failures, transient.retry_after_s, rand)
        log.warning("%s: %s; retrying in %.2f s", what, transient.reason, delay)
        await sleep(delay)
