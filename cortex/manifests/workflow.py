"""Workflow manifests: a declarative DAG of actions, its pydantic schema, loader and resolved spec.

A workflow names its inputs (a JSON schema), its steps (``tool``, ``llm``, ``agent``,
``workflow`` or ``relic`` actions with ``depends_on`` and ``$id`` references to earlier results;
``$input.x`` reads an input) and its output (one reference or a text template). It runs as a
child run through the kernel's usual rules; see docs/pools.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from cortex.errors import ManifestError
from cortex.kernel.protocol.refs import REFERENCE, find_refs
from cortex.manifests.plugin import PluginManifest, load_plugin_manifest
from cortex.manifests.yaml_lines import Locator, load_yaml_with_lines
from cortex.specs import ToolSpec

StepType = Literal["tool", "llm", "agent", "workflow", "relic"]
StepMode = Literal["sync", "async", "fire_and_forget"]

INPUT = "input"
VARS = "vars"
_RESERVED_IDS = frozenset({INPUT, VARS})

Problem = tuple[tuple[str | int, ...], str]
"""A field path in the manifest and what is wrong there."""


class StepDecl(BaseModel):
    """One step: an action of the DAG."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)
    type: StepType
    name: str = Field(min_length=1, pattern=r"^[^\s\"<>&]+$")
    params: Any = None
    depends_on: tuple[str, ...] = ()
    mode: StepMode = "async"
    timeout_s: float | None = Field(default=None, gt=0)
    retry: int | None = Field(default=None, ge=0)

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        """``input`` and ``vars`` name the workflow's inputs, not a step."""
        if value in _RESERVED_IDS:
            raise ValueError(f"{value!r} is reserved ($input.x reads an input); choose another id")
        return value

    @field_validator("depends_on", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        """``depends_on`` may be a list or a comma-separated string."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


class WorkflowManifest(BaseModel):
    """A workflow: inputs, a DAG of steps and the declared output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["workflow"] = "workflow"
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$", max_length=64)
    description: str = ""
    plugins: tuple[str, ...] = ()
    inputs: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    steps: tuple[StepDecl, ...] = Field(min_length=1)
    output: str = Field(min_length=1)
    max_parallel: int = Field(default=8, ge=1)
    step_timeout_s: float = Field(default=300.0, gt=0)

    _source: str = PrivateAttr(default="<workflow>")
    _directory: Path = PrivateAttr(default_factory=Path.cwd)
    _lines: dict[tuple[str | int, ...], int] = PrivateAttr(default_factory=dict)

    @field_validator("inputs")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        """The inputs must be a valid JSON schema describing an object."""
        import jsonschema

        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON schema: {exc.message}") from exc
        if schema.get("type", "object") != "object":
            raise ValueError("the inputs schema must describe an object (type: object)")
        return schema

    def where(self, loc: Sequence[str | int]) -> str:
        """``file:line: field`` for a field path, as error messages show it."""
        line = self._lines.get(tuple(loc))
        field = ".".join(str(part) for part in loc) or "(manifest)"
        return f"{self._source}:{line}: {field}" if line else f"{self._source}: {field}"


class WorkflowStep(msgspec.Struct, frozen=True, kw_only=True):
    """A step as stored (``$input.x`` is rewritten to ``$vars.x`` when the workflow is rendered)."""

    id: str
    type: str
    name: str
    params: Any = None
    depends_on: tuple[str, ...] = ()
    mode: str = "async"
    timeout_s: float | None = None
    retry: int | None = None


class WorkflowSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A workflow resolved for the store: steps, output, the tools its steps use, and limits."""

    name: str
    steps: tuple[WorkflowStep, ...]
    output: str
    description: str = ""
    inputs: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object"})
    tools: tuple[ToolSpec, ...] = ()
    max_parallel: int = 8
    step_timeout_s: float = 300.0


def inputs_to_vars(value: Any) -> Any:
    """``value`` with every ``$input`` reference rewritten as ``$vars`` (the run's variables)."""
    if isinstance(value, str):
        return REFERENCE.sub(lambda m: f"$vars{m.group(2)}" if m.group(1) == INPUT else m.group(0), value)
    if isinstance(value, dict):
        return {k: inputs_to_vars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [inputs_to_vars(v) for v in value]
    return value


def _input_names(value: Any) -> list[str]:
    """The input names ``$input.<name>`` references in ``value`` read (``""`` for bare ``$input``)."""
    names: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            for m in REFERENCE.finditer(item):
                if m.group(1) == INPUT:
                    names.append(m.group(2).lstrip(".").split(".")[0].split("[")[0])
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return names


def _check_refs(value: Any, loc: tuple[str | int, ...], ids: set[str], known_inputs: set[str] | None,
                own: str | None) -> tuple[list[str], list[Problem]]:
    """The step ids ``value`` references, and the references that name nothing."""
    problems: list[Problem] = []
    for name in _input_names(value):
        if known_inputs is not None and name and name not in known_inputs:
            problems.append((loc, f"$input.{name} is not one of the inputs ({', '.join(sorted(known_inputs))})"))
    refs = [r for r in find_refs(value) if r != INPUT]
    for ref in refs:
        if ref == VARS:
            problems.append((loc, "use $input.name to read an input ($vars is reserved)"))
        elif ref == own:
            problems.append((loc, f"step {own!r} references its own result"))
        elif ref not in ids:
            problems.append((loc, f"${ref} names no step (steps: {', '.join(sorted(ids))})"))
    return [r for r in refs if r in ids and r != own], problems


def check_graph(manifest: WorkflowManifest) -> list[Problem]:
    """Problems of the DAG: duplicate ids, unknown dependencies and references, cycles."""
    problems: list[Problem] = []
    ids: set[str] = set()
    for i, step in enumerate(manifest.steps):
        if step.id in ids:
            problems.append((("steps", i, "id"), f"step id {step.id!r} is used twice"))
        ids.add(step.id)
    properties = manifest.inputs.get("properties")
    known_inputs = set(properties) if isinstance(properties, dict) else None
    edges: dict[str, set[str]] = {}
    for i, step in enumerate(manifest.steps):
        refs, found = _check_refs(step.params, ("steps", i, "params"), ids, known_inputs, step.id)
        problems += found
        for dep in step.depends_on:
            if dep not in ids or dep == step.id:
                problems.append((("steps", i, "depends_on"), f"depends_on names {dep!r}, which is not another step"))
        edges.setdefault(step.id, set()).update(refs, (d for d in step.depends_on if d in ids))
    problems += _check_refs(manifest.output, ("output",), ids, known_inputs, None)[1]
    cycle = _find_cycle(edges)
    if cycle:
        index = next(i for i, s in enumerate(manifest.steps) if s.id == cycle[0])
        problems.append((("steps", index, "id"), f"steps form a cycle: {' -> '.join(cycle)}"))
    return problems


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One dependency cycle (first node repeated at the end), if any."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        """Depth-first search from ``node``; the cycle found, if any."""
        state[node] = 1
        path.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in edges:
        if node not in state and (found := visit(node)):
            return found
    return None


def _raise(manifest: WorkflowManifest, problems: list[Problem]) -> None:
    """Raise one ManifestError listing every problem with file, line and field."""
    if problems:
        raise ManifestError("\n".join(f"{manifest.where(loc)}: {message}" for loc, message in problems))


def validation_problem(path: Path, exc: ValidationError, locate: Locator) -> ManifestError:
    """One ManifestError listing every pydantic error as ``file:line: field: message``."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        field = ".".join(str(part) for part in loc) or "(manifest)"
        lines.append(f"{path}:{locate(loc)}: {field}: {err['msg'].removeprefix('Value error, ')}")
    return ManifestError("\n".join(lines))


def load_workflow_manifest(path: str | Path) -> WorkflowManifest:
    """Load and validate a workflow manifest; errors raise ``ManifestError`` naming file, line and field."""
    path = Path(path)
    data, locate = load_yaml_with_lines(path)
    if not isinstance(data, dict):
        raise ManifestError(f"{path}:1: a workflow manifest must be a mapping of fields")
    try:
        manifest = WorkflowManifest.model_validate(data)
    except ValidationError as exc:
        raise validation_problem(path, exc, locate) from exc
    manifest._source = str(path)
    manifest._directory = path.parent.resolve()
    steps = [("steps", i, key) for i in range(len(manifest.steps)) for key in ("id", "name", "params", "depends_on")]
    plugins = [("plugins", i) for i in range(len(manifest.plugins))]
    manifest._lines = {loc: locate(loc) for loc in [("output",), *steps, *plugins]}
    _raise(manifest, check_graph(manifest))
    return manifest


def tool_steps(steps: Iterable[StepDecl | WorkflowStep]) -> list[str]:
    """The distinct tool names the steps call, in order."""
    return list(dict.fromkeys(step.name for step in steps if step.type == "tool"))


async def find_tools(names: Iterable[str], plugins: Mapping[str, PluginManifest] | None = None) -> dict[str, ToolSpec]:
    """The specs of the named tools (``<plugin>.<tool>``) offered by ``plugins`` or the built-in plugins."""
    from cortex.adapters.tools.builtin import builtin_manifests
    from cortex.manifests.agent import plugin_tools

    known = {p.name: p for p in builtin_manifests()}
    known.update(plugins or {})
    wanted = list(names)
    found: dict[str, ToolSpec] = {}
    for plugin_name in dict.fromkeys(name.split(".", 1)[0] for name in wanted):
        if plugin_name in known:
            found.update((t.name, t) for t in await plugin_tools(known[plugin_name]) if t.name in wanted)
    return found


async def resolve_workflow(manifest: WorkflowManifest, plugins: Mapping[str, PluginManifest] | None = None) -> WorkflowSpec:
    """The spec to store: graph checked, and every tool step resolved to its ToolSpec.

    Tools come from ``plugins`` (loaded alongside, by name), the manifest's own ``plugins``
    (manifest paths, relative to its folder) and the built-in plugins.
    """
    problems = check_graph(manifest)
    available = dict(plugins or {})
    for i, ref in enumerate(manifest.plugins):
        try:
            plugin = load_plugin_manifest(manifest._directory / ref)
        except ManifestError as exc:
            problems.append((("plugins", i), str(exc)))
            continue
        available[plugin.name] = plugin
    found = await find_tools(tool_steps(manifest.steps), available)
    for i, step in enumerate(manifest.steps):
        if step.type == "tool" and step.name not in found:
            problems.append((("steps", i, "name"), f"unknown tool {step.name!r} (no plugin offers it)"))
    _raise(manifest, problems)
    return WorkflowSpec(
        name=manifest.name,
        description=manifest.description,
        inputs=manifest.inputs,
        steps=tuple(
            WorkflowStep(
                id=s.id, type=s.type, name=s.name, params=s.params,
                depends_on=s.depends_on, mode=s.mode, timeout_s=s.timeout_s, retry=s.retry,
            )
            for s in manifest.steps
        ),
        output=manifest.output,
        tools=tuple(found[name] for name in tool_steps(manifest.steps)),
        max_parallel=manifest.max_parallel,
        step_timeout_s=manifest.step_timeout_s,
    )
