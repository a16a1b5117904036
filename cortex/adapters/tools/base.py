"""The interface every tool runtime implements, and the context of one call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from cortex.errors import ToolError
from cortex.manifests.plugin import PluginManifest
from cortex.specs import ToolSpec

ProgressFn = Callable[[str, float | None], Awaitable[None]]
"""Reports progress of a call: a message and a fraction in [0, 1] (or None if unknown)."""


async def no_progress(message: str, fraction: float | None) -> None:
    """The default progress sink: ignore the report."""


@dataclass(frozen=True, kw_only=True)
class CallContext:
    """Who a call is for and how long it may take; ``timeout_s`` None means the tool's own limit."""

    run_id: str = ""
    action_id: str = ""
    attempt: int = 1
    timeout_s: float | None = None
    progress: ProgressFn = field(default=no_progress)


@runtime_checkable
class ToolRuntime(Protocol):
    """Runs the tools of one plugin: start once, list tools, call them, close."""

    manifest: PluginManifest

    async def start(self) -> None:
        """Prepare the runtime (import, check the sandbox, connect); raise ToolError if impossible."""
        ...

    def tools(self) -> list[ToolSpec]:
        """The tools offered, named ``<plugin>.<tool>``; valid after ``start``."""
        ...

    async def call(self, tool: str, params: dict[str, Any], ctx: CallContext) -> Any:
        """Run one tool (full or short name) and return a JSON-able result; raise ToolError subclasses."""
        ...

    async def close(self) -> None:
        """Release processes and connections; calling it twice is harmless."""
        ...


def find_spec(specs: Sequence[ToolSpec], manifest: PluginManifest, tool: str) -> ToolSpec:
    """The spec for ``tool`` given as ``<plugin>.<tool>`` or as the short name; ToolError if unknown."""
    name = tool if tool.startswith(f"{manifest.name}.") else manifest.qualified(tool)
    for spec in specs:
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in specs) or "none"
    raise ToolError(f"plugin {manifest.name} has no tool {tool!r} (tools: {known})")


def short_name(spec: ToolSpec) -> str:
    """The tool's name inside its plugin (``text.extract`` -> ``extract``)."""
    return spec.name.removeprefix(f"{spec.plugin}.")


def call_timeout(spec: ToolSpec, ctx: CallContext) -> float:
    """The wall-clock limit of one call: the context's if given, else the tool's."""
    return ctx.timeout_s if ctx.timeout_s is not None else spec.timeout_s


def check_params(spec: ToolSpec, params: dict[str, Any]) -> None:
    """Validate params against the tool's JSON schema; ToolError names the first bad field."""
    import jsonschema

    if not isinstance(params, dict):
        raise ToolError(f"invalid params for {spec.name}: expected a JSON object")
    validator = jsonschema.Draft202012Validator(spec.params_schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(params))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(params)"
        raise ToolError(f"invalid params for {spec.name}: {where}: {error.message}")
