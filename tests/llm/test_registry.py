"""Building providers by name from an agent's provider, model and options."""

from __future__ import annotations

import sys

import pytest

from cortex.adapters.llm.anthropic import AnthropicProvider
from cortex.adapters.llm.openai_compat import OpenAICompatProvider
from cortex.adapters.llm.registry import make_provider
from cortex.adapters.llm.retry import BackoffPolicy
from cortex.errors import ConfigError, ProviderError


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(
        ConfigError, match="unknown provider 'gpt'; known providers: anthropic, gemini"
    ):
        make_provider("gpt", "m", {})


def test_unknown_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="provider 'anthropic': bad options"):
        make_provider("anthropic", "claude", {"colour": "blue"})


async def test_presets_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gsk-1")
    monkeypatch.setenv("CORTEX_OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")
    groq = make_provider("groq", "llama-3.1-8b-instant", {"max_attempts": 2})
    plain = make_provider("openai", "gpt-4o-mini", {})
    claude = make_provider(
        "anthropic", "claude", {"base_url": "http://127.0.0.1:9", "backoff_base_s": 0.1}
    )
    try:
        assert isinstance(groq, OpenAICompatProvider) and isinstance(plain, OpenAICompatProvider)
        assert groq.base_url == "https://api.groq.com/openai/v1"
        assert groq.backoff == BackoffPolicy(max_attempts=2)
        assert plain.base_url == "http://127.0.0.1:9/v1"
        assert isinstance(claude, AnthropicProvider)
        assert claude.backoff == BackoffPolicy(base_s=0.1)
        assert claude.supports_continuation and not claude.supports_grammar
    finally:
        for provider in (groq, plain, claude):
            await provider.aclose()


async def test_local_provider_is_built_lazily() -> None:
    pytest.importorskip("llama_cpp")
    provider = make_provider("local", "gemma3-270m", {"n_ctx": 2048})
    try:
        assert type(provider).__name__ == "LlamaLocalProvider"
        assert provider.supports_continuation and provider.supports_grammar
    finally:
        await provider.aclose()


def test_missing_llama_cpp_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cortex.adapters.llm.llama_local", None)
    with pytest.raises(
        ProviderError, match=r"local provider unavailable: .*pip install 'cortex-prime\[local\]'"
    ):
        make_provider("llama", "", {})
