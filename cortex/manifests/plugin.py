"""Plugin manifests: the pydantic schema of a plugin's YAML and its loader.

A plugin offers tools to agents. Its manifest names the runtime the tools run in, what they
may touch (network, filesystem, environment) and the limits they run under. The model sees
each tool as ``<plugin>.<tool>`` (``text.extract``, ``http.fetch``); see docs/plugins.md.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from cortex.errors import ManifestError
from cortex.manifests.yaml_lines import load_yaml_with_lines
from cortex.specs import RetryPolicy, ToolSpec

SideEffects = Literal["read_only", "write"]
RuntimeName = Literal["python", "subprocess", "docker", "mcp"]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_vars(value: str, env: dict[str, str] | None = None) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` (then ``~``); an unset VAR without default is an error."""
    source = os.environ if env is None else env

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in source and source[name] != "":
            return source[name]
        if default is not None:
            return default
        raise ValueError(f"environment variable {name} is not set and has no default")

    return os.path.expanduser(_VAR.sub(replace, value))


class _Strict(BaseModel):
    """Base for manifest models: unknown fields are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolDecl(_Strict):
    """One tool a plugin offers; unset fields fall back to the plugin's defaults."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$", max_length=64)
    description: str = ""
    params: dict[str, Any] | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    idempotent: bool | None = None
    side_effects: SideEffects | None = None

    @field_validator("params")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        """The params must be a valid JSON schema describing an object."""
        if schema is None:
            return None
        import jsonschema

        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON schema: {exc.message}") from exc
        if schema.get("type", "object") != "object":
            raise ValueError("the params schema must describe an object (type: object)")
        return schema


class FilesystemGrant(_Strict):
    """Paths a tool may read, and paths it may write (writable paths are readable too)."""

    read: tuple[Path, ...] = ()
    write: tuple[Path, ...] = ()

    @field_validator("read", "write", mode="before")
    @classmethod
    def _resolve(cls, value: Any, info: ValidationInfo) -> Any:
        """Expand variables and ``~``; relative paths are relative to the manifest's directory."""
        if not isinstance(value, list | tuple):
            return value
        base = Path((info.context or {}).get("base_dir", Path.cwd()))
        out = []
        for item in value:
            if not isinstance(item, str | Path):
                raise ValueError("paths must be strings")
            out.append((base / expand_vars(str(item))).resolve())
        return tuple(out)


class Permissions(_Strict):
    """What a plugin's tools may touch: network hosts, filesystem paths, environment variables."""

    network: tuple[str, ...] = ()
    filesystem: FilesystemGrant = FilesystemGrant()
    env: tuple[str, ...] = ()

    @field_validator("network", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> Any:
        """``none`` (or null) means no network; otherwise a list of host names (``*.x.org`` allowed)."""
        if value is None or value == "none":
            return ()
        if not isinstance(value, list | tuple):
            raise ValueError("network must be 'none' or a list of host names")
        hosts: list[str] = []
        for item in value:
            if not isinstance(item, str):
                raise ValueError("host names must be strings")
            hosts.extend(h.strip().lower() for h in expand_vars(item).split(",") if h.strip())
        return tuple(hosts)

    @field_validator("env")
    @classmethod
    def _env_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        """Environment grants are variable names, passed through from the worker's environment."""
        for name in names:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"not an environment variable name: {name!r}")
        return names

    @property
    def network_granted(self) -> bool:
        """True when at least one host is allowed."""
        return bool(self.network)

    def host_allowed(self, host: str) -> bool:
        """True if ``host`` is on the allowlist (exact, or under a ``*.domain`` entry)."""
        host = host.lower().rstrip(".")
        return any(e == host or (e.startswith("*.") and host.endswith(e[1:])) for e in self.network)


class Limits(_Strict):
    """Resource limits for each call: wall clock, address space, CPU time, processes."""

    timeout_s: float = Field(default=30.0, gt=0)
    memory_mb: int = Field(default=512, gt=0)
    cpu_s: int = Field(default=60, gt=0)
    processes: int = Field(default=64, gt=0)
    cpus: float | None = Field(default=None, gt=0)


class Retry(_Strict):
    """How a failed call is retried (the kernel decides; the manifest only declares)."""

    max_attempts: int = Field(default=1, ge=1)
    backoff_s: float = Field(default=0.5, ge=0)
    backoff_factor: float = Field(default=2.0, ge=1)
    max_backoff_s: float = Field(default=30.0, ge=0)


class PluginManifest(_Strict):
    """A plugin: identity, runtime, tools, permissions and limits."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    version: str = Field(min_length=1)
    kind: Literal["system", "custom"] = "custom"
    runtime: RuntimeName
    description: str = ""
    module: str | None = Field(default=None, validate_default=True)
    command: tuple[str, ...] = Field(default=(), validate_default=True)
    image: str | None = Field(default=None, validate_default=True)
    tools: tuple[ToolDecl, ...] = ()
    permissions: Permissions = Permissions()
    limits: Limits = Limits()
    idempotent: bool = True
    side_effects: SideEffects = "read_only"
    pool: str = "tool"
    lane: str | None = None
    retry: Retry = Retry()

    _directory: Path | None = PrivateAttr(default=None)

    @field_validator("runtime")
    @classmethod
    def _python_is_system(cls, runtime: str, info: ValidationInfo) -> str:
        """In-process python plugins are trusted code: only ``kind: system`` may use them."""
        if runtime == "python" and info.data.get("kind") != "system":
            raise ValueError("runtime python runs in process; only kind: system plugins may use it")
        return runtime

    @field_validator("module")
    @classmethod
    def _module_for_python(cls, module: str | None, info: ValidationInfo) -> str | None:
        """``module`` is required by, and only allowed for, the python runtime."""
        runtime = info.data.get("runtime")
        if runtime == "python" and not module:
            raise ValueError("runtime python needs the dotted path of the module holding its @tool functions")
        if runtime not in (None, "python") and module:
            raise ValueError(f"module is only for runtime python, not {runtime}")
        return module

    @field_validator("command")
    @classmethod
    def _command_for_processes(cls, command: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        """``command`` is required by subprocess and mcp, optional for docker, absent for python."""
        runtime = info.data.get("runtime")
        if runtime in ("subprocess", "mcp") and not command:
            raise ValueError(f"runtime {runtime} needs a command (a list: program and arguments)")
        if runtime == "python" and command:
            raise ValueError("command is not used by runtime python")
        return command

    @field_validator("image")
    @classmethod
    def _image_for_docker(cls, image: str | None, info: ValidationInfo) -> str | None:
        """``image`` is required by, and only allowed for, the docker runtime."""
        runtime = info.data.get("runtime")
        if runtime == "docker" and not image:
            raise ValueError("runtime docker needs an image")
        if runtime not in (None, "docker") and image:
            raise ValueError(f"image is only for runtime docker, not {runtime}")
        return image

    @field_validator("tools")
    @classmethod
    def _unique_tools(cls, tools: tuple[ToolDecl, ...]) -> tuple[ToolDecl, ...]:
        """Tool names are unique within a plugin."""
        seen: set[str] = set()
        for decl in tools:
            if decl.name in seen:
                raise ValueError(f"tool {decl.name!r} is declared twice")
            seen.add(decl.name)
        return tools

    @property
    def directory(self) -> Path:
        """The directory the manifest was loaded from (the current directory if built in code)."""
        return self._directory or Path.cwd()

    def with_directory(self, directory: Path) -> PluginManifest:
        """A copy whose relative command paths and working directory refer to ``directory``."""
        copy = self.model_copy()
        copy._directory = directory
        return copy

    def qualified(self, tool: str) -> str:
        """The name the model sees: ``<plugin>.<tool>``."""
        return f"{self.name}.{tool}"

    def declared(self, tool: str) -> ToolDecl | None:
        """The manifest's declaration of ``tool`` (short name), if any."""
        return next((d for d in self.tools if d.name == tool), None)

    def tool_spec(self, decl: ToolDecl) -> ToolSpec:
        """Resolve a declaration against the plugin's defaults into the spec events carry."""
        return ToolSpec(
            name=self.qualified(decl.name),
            description=decl.description,
            params_schema=decl.params if decl.params is not None else {"type": "object"},
            plugin=self.name,
            pool=self.pool,
            lane=self.lane,
            timeout_s=decl.timeout_s or self.limits.timeout_s,
            idempotent=self.idempotent if decl.idempotent is None else decl.idempotent,
            side_effects=decl.side_effects or self.side_effects,
            retry=RetryPolicy(**self.retry.model_dump()),
        )


def load_plugin_manifest(path: str | Path) -> PluginManifest:
    """Load and validate a plugin manifest; errors raise ``ManifestError`` with file, line and field."""
    path = Path(path)
    data, locate = load_yaml_with_lines(path)
    if not isinstance(data, dict):
        raise ManifestError(f"{path}:1: a plugin manifest must be a mapping of fields")
    directory = path.parent.resolve()
    try:
        manifest = PluginManifest.model_validate(data, context={"base_dir": directory})
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            field = ".".join(str(part) for part in loc) or "(manifest)"
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"{path}:{locate(loc)}: {field}: {message}")
        raise ManifestError("\n".join(lines)) from exc
    return manifest.with_directory(directory)
