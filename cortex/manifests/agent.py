"""Agent manifests: the pydantic schema of an agent's YAML, and its resolution into an ``AgentSpec``.

An agent names its model (provider, model, options), adds to the system prompt, and says which
tools it may call: ``plugins`` makes plugins available (built-in names or manifest paths),
``tools`` picks tool names or globs (``files.*``) among them and the built-in plugins. See
docs/manifests.md.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from cortex.adapters.llm.registry import OPENAI_PRESETS
from cortex.adapters.tools.builtin import builtin_manifests
from cortex.adapters.tools.registry import load_runtime
from cortex.errors import ManifestError, ToolError
from cortex.kernel.prompt.render import PROMPT_VERSIONS
from cortex.manifests.plugin import PluginManifest, load_plugin_manifest
from cortex.specs import AgentSpec, Limits, ToolSpec

NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
"""Agent, workflow and feed names are single subject tokens."""

Where = Callable[[Sequence[str | int]], str]
"""Formats where a field path is defined, e.g. ``agents/a.yaml:12``."""

PROVIDERS: frozenset[str] = frozenset({"scripted", "anthropic", "local", "llama", *OPENAI_PRESETS})
"""Provider names ``cortex.adapters.llm.registry.make_provider`` knows."""


def _tool_pattern(pattern: str) -> str:
    """Tool entries are ``plugin.tool`` names or globs such as ``files.*``."""
    if "." not in pattern:
        raise ValueError(f"{pattern!r} is not a tool name: write <plugin>.<tool> (globs like files.* allowed)")
    return pattern


def _manifest_name(name: str) -> str:
    """Sub-agent and workflow names are manifest names."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise ValueError(f"{name!r} is not a manifest name (letters, digits, '-' and '_')")
    return name


ToolPattern = Annotated[str, AfterValidator(_tool_pattern)]
ManifestName = Annotated[str, AfterValidator(_manifest_name)]


class _Strict(BaseModel):
    """Base for manifest models: unknown fields are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_LIMITS = Limits()


class AgentLimits(_Strict):
    """Per-run limits; maps one to one onto ``cortex.specs.Limits``."""

    max_iterations: int = Field(default=_LIMITS.max_iterations, ge=1)
    max_parallel_actions: int = Field(default=_LIMITS.max_parallel_actions, ge=1)
    action_timeout_s: float = Field(default=_LIMITS.action_timeout_s, gt=0)
    fail_fast: bool = _LIMITS.fail_fast
    max_tokens: int = Field(default=_LIMITS.max_tokens, ge=1)
    max_result_chars: int = Field(default=_LIMITS.max_result_chars, ge=1)

    def spec(self) -> Limits:
        """The limits as events carry them."""
        return Limits(**self.model_dump())


class ContextFeed(_Strict):
    """A context feed: named source of text that enters the prompt as a ``<context feed="..">`` block."""

    name: str = Field(pattern=NAME_PATTERN, max_length=64)
    source: str = Field(min_length=1)
    description: str = ""
    max_tokens: int = Field(default=500, ge=1)
    refresh_s: float | None = Field(default=None, gt=0)


class AgentManifest(_Strict):
    """An agent: model, prompt additions, tools, sub-agents, workflows, feeds, limits, examples."""

    kind: Literal["agent"] = "agent"
    name: str = Field(pattern=NAME_PATTERN, max_length=64)
    description: str = ""
    provider: str = "scripted"
    model: str = ""
    provider_options: dict[str, Any] = Field(default_factory=dict)
    system_prompt: str = ""
    prompt_version: str = "v1"
    plugins: tuple[str, ...] = ()
    tools: tuple[ToolPattern, ...] | None = None
    agents: tuple[ManifestName, ...] = ()
    workflows: tuple[ManifestName, ...] = ()
    context_feeds: tuple[ContextFeed, ...] = ()
    limits: AgentLimits = AgentLimits()
    examples: tuple[str, ...] = ()

    _directory: Path | None = PrivateAttr(default=None)
    _where: Where | None = PrivateAttr(default=None)

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, provider: str) -> str:
        """The provider must be one the LLM registry can build."""
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; known: {', '.join(sorted(PROVIDERS))}")
        return provider

    @field_validator("prompt_version")
    @classmethod
    def _known_prompt(cls, version: str) -> str:
        """The system prompt template must exist."""
        if version not in PROMPT_VERSIONS:
            raise ValueError(f"unknown prompt version {version!r}; known: {', '.join(PROMPT_VERSIONS)}")
        return version

    @field_validator("agents", "workflows", "plugins")
    @classmethod
    def _unique(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        """Each sub-agent, workflow and plugin is listed once."""
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"listed more than once: {', '.join(repeated)}")
        return names

    @field_validator("context_feeds")
    @classmethod
    def _unique_feeds(cls, feeds: tuple[ContextFeed, ...]) -> tuple[ContextFeed, ...]:
        """Feed names are unique within an agent."""
        names = [feed.name for feed in feeds]
        if len(set(names)) != len(names):
            raise ValueError("context feed names must be unique")
        return feeds

    @property
    def directory(self) -> Path:
        """The directory relative plugin and script paths refer to (the manifest's own)."""
        return self._directory or Path.cwd()

    def with_origin(self, directory: Path, where: Where | None = None) -> AgentManifest:
        """A copy whose relative paths refer to ``directory`` and whose errors say where fields are."""
        copy = self.model_copy()
        copy._directory = directory
        copy._where = where
        return copy

    def problem(self, field: Sequence[str | int], message: str) -> ManifestError:
        """A ManifestError naming the file and line of ``field`` (when known), the field and the problem."""
        where = self._where(field) if self._where else f"agent {self.name}"
        return ManifestError(f"{where}: {'.'.join(map(str, field))}: {message}")


def is_plugin_path(ref: str) -> bool:
    """True if a ``plugins`` entry is a manifest path rather than a plugin name."""
    return "/" in ref or ref.endswith((".yaml", ".yml"))


async def plugin_tools(manifest: PluginManifest) -> list[ToolSpec]:
    """The tools a plugin offers: declared ones, or (python and undeclared mcp) asked of its runtime."""
    if manifest.runtime in ("subprocess", "docker") or (manifest.runtime == "mcp" and manifest.tools):
        return [manifest.tool_spec(decl) for decl in manifest.tools]
    runtime = load_runtime(manifest)
    try:
        await runtime.start()
        return runtime.tools()
    except ToolError as exc:
        raise ManifestError(f"plugin {manifest.name}: cannot list its tools: {exc}") from exc
    finally:
        await runtime.close()


def agent_plugins(
    manifest: AgentManifest, available: Mapping[str, PluginManifest]
) -> tuple[list[PluginManifest], list[PluginManifest]]:
    """(plugins the agent lists, plugins its ``tools`` globs may pick from) as manifests."""
    known = {p.name: p for p in builtin_manifests()}
    known.update(available)
    listed: list[PluginManifest] = []
    for index, ref in enumerate(manifest.plugins):
        if is_plugin_path(ref):
            path = manifest.directory / ref
            if not path.is_file():
                raise manifest.problem(("plugins", index), f"no plugin manifest at {path}")
            plugin = load_plugin_manifest(path)
        elif ref in known:
            plugin = known[ref]
        else:
            raise manifest.problem(
                ("plugins", index),
                f"no plugin named {ref!r} (known: {', '.join(sorted(known))}; "
                "or give the path of a plugin manifest)",
            )
        listed.append(plugin)
    pool = {p.name: p for p in known.values()}
    pool.update({p.name: p for p in listed})
    return listed, list(pool.values())


def select_tools(patterns: Sequence[str], offered: Sequence[ToolSpec]) -> tuple[list[ToolSpec], list[str]]:
    """The tools matching the patterns (in pattern order, each once); and the patterns that matched nothing."""
    chosen: dict[str, ToolSpec] = {}
    unmatched = []
    for pattern in patterns:
        matches = [t for t in offered if fnmatch.fnmatchcase(t.name, pattern)]
        if not matches:
            unmatched.append(pattern)
        for spec in matches:
            chosen.setdefault(spec.name, spec)
    return list(chosen.values()), unmatched


async def resolve_agent(
    manifest: AgentManifest, plugins: Mapping[str, PluginManifest] | None = None
) -> AgentSpec:
    """Resolve an agent into the ``AgentSpec`` events carry (ManifestError if a tool is unknown).

    ``plugins`` are plugin manifests loaded alongside (by name); built-in plugins are always known.
    Without ``tools`` the agent gets every tool of the plugins it lists; with ``tools`` exactly
    the tools matching its names and globs, among its plugins and the built-in ones.
    """
    listed, pool = agent_plugins(manifest, plugins or {})
    if manifest.tools is None:
        tools = [spec for plugin in listed for spec in await plugin_tools(plugin)]
    else:
        prefixes = {pattern.split(".", 1)[0] for pattern in manifest.tools}
        wanted = [p for p in pool if any(fnmatch.fnmatchcase(p.name, prefix) for prefix in prefixes)]
        offered = [spec for plugin in wanted for spec in await plugin_tools(plugin)]
        tools, unmatched = select_tools(manifest.tools, offered)
        if unmatched:
            names = ", ".join(sorted(t.name for t in offered)) or "none"
            raise manifest.problem(
                ("tools", manifest.tools.index(unmatched[0])),
                f"{', '.join(unmatched)} match no tool (tools of the matching plugins: {names})",
            )
    return AgentSpec(
        name=manifest.name,
        provider=manifest.provider,
        model=manifest.model,
        system_prompt=manifest.system_prompt,
        tools=tuple(dict((t.name, t) for t in tools).values()),
        agents=manifest.agents,
        workflows=manifest.workflows,
        limits=manifest.limits.spec(),
        provider_options=_absolute_script(manifest),
        prompt_version=manifest.prompt_version,
        examples=manifest.examples,
    )


def _absolute_script(manifest: AgentManifest) -> dict[str, Any]:
    """Provider options with a scripted provider's script (or model) path made absolute."""
    options = dict(manifest.provider_options)
    if manifest.provider != "scripted":
        return options
    script = options.get("script", manifest.model or None)
    if isinstance(script, str) and not Path(script).is_absolute() and (manifest.directory / script).is_file():
        options["script"] = str((manifest.directory / script).resolve())
    return options
