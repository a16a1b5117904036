"""A deterministic provider that replays scripted output, paced like a real model.

A script is a list of rules; the first rule whose conditions all hold gives the output.
Conditions look at the last user message, the whole prompt (every message plus the assistant
prefix) and the ``<action_result id="..">`` blocks injected into it. Output is cut into tokens
by ``TOKEN_PATTERN`` (a word or a run of punctuation, each with one optional leading space, or
a run of whitespace), so ``count_tokens`` says exactly how many tokens a text streams as.
The first chunk arrives ``ttft_s`` after the request, then one token every ``token_delay_s``,
scheduled against absolute deadlines on the event loop's clock so delays do not accumulate.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import yaml

from cortex.adapters.llm.base import CompletionRequest, StreamDelta
from cortex.bus.events import Usage
from cortex.errors import ConfigError, ProviderError

TOKEN_PATTERN = re.compile(r" ?\w+| ?[^\w\s]+|\s+")
_RESULT_ID = re.compile(r"""<action_result\b[^>]*?\bid\s*=\s*["']([^"']*)["']""")
_RESULT_END = "</action_result>"


def tokenize(text: str) -> list[str]:
    """Split ``text`` into scripted tokens; joining them gives ``text`` back."""
    return TOKEN_PATTERN.findall(text)


def count_tokens(text: str) -> int:
    """How many scripted tokens ``text`` streams as."""
    return sum(1 for _ in TOKEN_PATTERN.finditer(text))


class ScriptRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One rule: the output ``text`` and the conditions (all that are given must hold)."""

    text: str
    user_contains: str | None = None
    user_regex: str | None = None
    prompt_contains: str | None = None
    prompt_regex: str | None = None
    after_result: str | tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Reject invalid regular expressions when the script is loaded."""
        for pattern in (self.user_regex, self.prompt_regex):
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ConfigError(f"scripted: bad regex {pattern!r}: {exc}") from exc

    @property
    def result_ids(self) -> tuple[str, ...]:
        """The action ids whose injected results this rule waits for."""
        return (self.after_result,) if isinstance(self.after_result, str) else self.after_result

    def matches(self, last_user: str, prompt: str, results: frozenset[str]) -> bool:
        """Whether every condition holds for this prompt."""
        return (
            (self.user_contains is None or self.user_contains in last_user)
            and (self.user_regex is None or re.search(self.user_regex, last_user) is not None)
            and (self.prompt_contains is None or self.prompt_contains in prompt)
            and (self.prompt_regex is None or re.search(self.prompt_regex, prompt) is not None)
            and all(rid in results for rid in self.result_ids)
        )


class ScriptFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A script as stored in YAML: the rules and optional pacing."""

    rules: tuple[ScriptRule, ...]
    ttft_s: float | None = None
    token_delay_s: float | None = None
    tokens_per_chunk: int | None = None


class ScriptedProvider:
    """Replays scripted text deterministically with configurable pacing."""

    name = "scripted"
    supports_continuation = True
    supports_grammar = False

    def __init__(
        self,
        script: Sequence[ScriptRule | Mapping[str, Any]],
        *,
        ttft_s: float = 0.0,
        token_delay_s: float = 0.0,
        tokens_per_chunk: int = 1,
    ) -> None:
        """Take the rules (structs or plain mappings) and the pacing."""
        if tokens_per_chunk < 1 or ttft_s < 0 or token_delay_s < 0:
            raise ConfigError("scripted: pacing must be non-negative and tokens_per_chunk >= 1")
        try:
            self.rules = tuple(
                r if isinstance(r, ScriptRule) else msgspec.convert(r, ScriptRule) for r in script
            )
        except msgspec.ValidationError as exc:
            raise ConfigError(f"scripted: invalid rule: {exc}") from exc
        self.ttft_s = ttft_s
        self.token_delay_s = token_delay_s
        self.tokens_per_chunk = tokens_per_chunk

    @classmethod
    def from_yaml(
        cls,
        path: str | Path,
        *,
        ttft_s: float | None = None,
        token_delay_s: float | None = None,
        tokens_per_chunk: int | None = None,
    ) -> ScriptedProvider:
        """Load a script file: a list of rules, or a mapping with ``rules`` and pacing keys."""
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"scripted: cannot read script {path}: {exc}") from exc
        if isinstance(raw, list):
            raw = {"rules": raw}
        try:
            loaded = msgspec.convert(raw, ScriptFile)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"scripted: invalid script {path}: {exc}") from exc
        return cls(
            loaded.rules,
            ttft_s=_first(ttft_s, loaded.ttft_s, 0.0),
            token_delay_s=_first(token_delay_s, loaded.token_delay_s, 0.0),
            tokens_per_chunk=int(_first(tokens_per_chunk, loaded.tokens_per_chunk, 1)),
        )

    def output_for(self, request: CompletionRequest) -> str:
        """The text this request streams (before stop sequences and max_tokens apply)."""
        prompt = _prompt_text(request)
        last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        results = frozenset(_RESULT_ID.findall(prompt))
        for index, rule in enumerate(self.rules):
            if rule.matches(last_user, prompt, results):
                return _continue(rule.text, request.assistant_prefix, index)
        raise ProviderError(
            f"scripted: no rule matches the prompt (last user message {last_user[:80]!r})"
        )

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamDelta, None]:
        """Stream the scripted output token by token on an absolute schedule."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        text, stop_reason = _apply_stop(self.output_for(request), request.stop)
        tokens = tokenize(text)
        if len(tokens) > request.max_tokens:
            tokens, stop_reason = tokens[: request.max_tokens], "max_tokens"
        per = self.tokens_per_chunk
        for first in range(0, len(tokens), per):
            chunk = tokens[first : first + per]
            await _sleep_until(
                loop, start + self.ttft_s + (first + len(chunk) - 1) * self.token_delay_s
            )
            yield StreamDelta(text="".join(chunk))
        if not tokens:
            await _sleep_until(loop, start + self.ttft_s)
        prompt_tokens = count_tokens(_prompt_text(request))
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=len(tokens))
        yield StreamDelta(stop_reason=stop_reason, usage=usage)

    async def aclose(self) -> None:
        """Nothing to release."""


def _prompt_text(request: CompletionRequest) -> str:
    """Every message and the assistant prefix, one per line: what rules and usage look at."""
    return "\n".join([*(m.content for m in request.messages), request.assistant_prefix])


def _first(*values: Any) -> Any:
    """The first value that is not None."""
    return next(v for v in values if v is not None)


def _continue(text: str, prefix: str, index: int) -> str:
    """The part of ``text`` that continues ``prefix`` (counting from its last injected result)."""
    if not prefix:
        return text
    cut = prefix.rfind(_RESULT_END)
    tail = prefix[cut + len(_RESULT_END) :] if cut >= 0 else prefix
    for head, body in ((tail, text), (tail.lstrip(), text.lstrip())):
        if body.startswith(head):
            return body[len(head) :]
    raise ProviderError(
        f"scripted: rule {index} does not continue the assistant prefix "
        f"(prefix ends {tail[-60:]!r}, rule starts {text[:60]!r})"
    )


def _apply_stop(text: str, stop: Sequence[str]) -> tuple[str, str]:
    """Cut ``text`` at the earliest stop sequence; the stop reason to report."""
    hits = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(hits)], "stop_sequence") if hits else (text, "end_turn")


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    """Sleep until the loop's clock reaches ``deadline`` (no-op if already past)."""
    delay = deadline - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)
