"""Load manifests from a file or a folder: ``import:`` resolution, merging, validation with file and line.

A document's ``kind`` says what it is: ``agent``, ``workflow``, ``relic``, or a plugin
(``kind: plugin``, ``system`` or ``custom``, or any document with a ``runtime``). A document
with neither ``kind`` nor ``name`` is a fragment, used only through ``import:``.

``import:`` lists other documents by relative path, ``file://`` URL or ``https://`` URL. Every
imported document of the same kind (or a fragment) is merged under the importing one: mappings
merge key by key, lists are concatenated (imported items first, duplicates dropped), scalars of
the importing document win; ``name``, ``kind`` and ``import`` are never inherited. Every imported
document that is a complete manifest (``kind`` and ``name``) is loaded as a manifest of its own
too. Cycles are errors. See docs/manifests.md.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import httpx
import msgspec
from pydantic import BaseModel, ValidationError

from cortex.errors import ManifestError
from cortex.manifests.agent import AgentManifest, resolve_agent
from cortex.manifests.plugin import PluginManifest
from cortex.manifests.relic import load_relic_manifest, resolve_relic
from cortex.manifests.workflow import load_workflow_manifest, resolve_workflow
from cortex.manifests.yaml_lines import Locator, load_yaml_with_lines

__all__ = ["LoadedManifest", "load_file", "load_manifests", "manifest_files", "resolve_agent", "stored_value"]

KINDS = ("agent", "plugin", "workflow", "relic")
PLUGIN_KINDS = ("plugin", "system", "custom")
_NOT_INHERITED = ("name", "kind", "import")
_FETCH_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class LoadedManifest:
    """One validated manifest: its kind, name, the file or URL it came from and the model."""

    kind: str
    name: str
    source: str
    manifest: Any


def display(ref: str) -> str:
    """How a document is named in messages: a URL, or a path relative to the current folder if inside it."""
    if ref.startswith("https://"):
        return ref
    path = Path(ref).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


@dataclass(frozen=True)
class _Doc:
    """One parsed YAML document (``ref``: absolute path or URL) and how to name places in it."""

    ref: str
    data: Any
    locate: Locator

    @property
    def source(self) -> str:
        """The document's name in messages."""
        return display(self.ref)

    @property
    def local_dir(self) -> Path | None:
        """The directory of a local document (None for https ones)."""
        return None if self.ref.startswith("https://") else Path(self.ref).parent

    def at(self, path: Sequence[str | int]) -> str:
        """``source:line`` of a field path."""
        return f"{self.source}:{self.locate(path)}"


@dataclass
class _Origin:
    """Where a merged value came from: a document, the path in it, and the same for its children."""

    doc: _Doc
    path: tuple[str | int, ...]
    children: dict[Any, _Origin] | list[_Origin] | None = None

    @classmethod
    def of(cls, doc: _Doc, value: Any, path: tuple[str | int, ...] = ()) -> _Origin:
        """The origin tree of ``value``, all of it from ``doc``."""
        if isinstance(value, dict):
            return cls(doc, path, {k: cls.of(doc, v, (*path, k)) for k, v in value.items()})
        if isinstance(value, list):
            return cls(doc, path, [cls.of(doc, v, (*path, i)) for i, v in enumerate(value)])
        return cls(doc, path)

    def where(self, field_path: Sequence[str | int]) -> str:
        """``source:line`` of a field path of the merged value (the deepest known place)."""
        node, depth = self, 0
        for part in field_path:
            children = node.children
            if isinstance(children, dict) and part in children:
                node = children[part]
            elif isinstance(children, list) and isinstance(part, int) and 0 <= part < len(children):
                node = children[part]
            else:
                break
            depth += 1
        return node.doc.at((*node.path, *field_path[depth:]))


_Node = tuple[Any, _Origin]


def merge(base: _Node, over: _Node) -> _Node:
    """Merge ``over`` onto ``base``: mappings by key, lists concatenated without duplicates, else ``over``."""
    (bv, bo), (ov, oo) = base, over
    if isinstance(bv, dict) and isinstance(ov, dict):
        value, children = dict(bv), dict(bo.children or {})  # type: ignore[arg-type]
        for key, item in ov.items():
            origin = oo.children[key]  # type: ignore[index]
            if key in value:
                value[key], children[key] = merge((value[key], children[key]), (item, origin))
            else:
                value[key], children[key] = item, origin
        return value, _Origin(oo.doc, oo.path, children)
    if isinstance(bv, list) and isinstance(ov, list):
        items, origins = list(bv), list(bo.children or [])  # type: ignore[arg-type]
        for item, origin in zip(ov, oo.children or [], strict=True):  # type: ignore[arg-type]
            if item not in items:
                items.append(item)
                origins.append(origin)
        return items, _Origin(oo.doc, oo.path, origins)
    return over


def kind_of(doc: _Doc) -> str | None:
    """The manifest kind of a document (None for a fragment); ManifestError for an unknown kind."""
    data = doc.data
    kind = data.get("kind")
    if kind in PLUGIN_KINDS or (kind is None and "runtime" in data):
        return "plugin"
    if kind is None:
        if "name" in data:
            raise ManifestError(f"{doc.at(('name',))}: kind: missing; expected one of {', '.join(KINDS)}")
        return None
    if kind not in KINDS:
        raise ManifestError(f"{doc.at(('kind',))}: kind: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind


# ---- reading documents ---------------------------------------------------------------


def _parse_text(text: str, source: str) -> tuple[Any, Locator]:
    """Parse YAML text with line tracking (through a temporary file, named ``source`` in errors)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        try:
            return load_yaml_with_lines(handle.name)
        except ManifestError as exc:
            raise ManifestError(str(exc).replace(handle.name, source)) from None


async def _read(ref: str) -> _Doc:
    """Read and parse one document: an absolute local path or an https URL."""
    if ref.startswith("https://"):
        try:
            async with httpx.AsyncClient(timeout=_FETCH_TIMEOUT_S, follow_redirects=True) as client:
                response = await client.get(ref)
                response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ManifestError(f"{ref}: cannot fetch manifest: {exc or type(exc).__name__}") from exc
        data, locate = _parse_text(response.text, ref)
    else:
        data, locate = load_yaml_with_lines(ref)
    doc = _Doc(ref, data, locate)
    if not isinstance(data, dict):
        raise ManifestError(f"{doc.source}:1: a manifest must be a mapping of fields")
    return doc


def _import_target(doc: _Doc, ref: Any, index: int) -> str:
    """The absolute path or URL an ``import:`` entry names, relative to the importing document."""
    where = doc.at(("import", index))
    if not isinstance(ref, str) or not ref.strip():
        raise ManifestError(f"{where}: import.{index}: an import is a path, file:// or https:// URL")
    if ref.startswith("https://"):
        return ref
    if ref.startswith("file://"):
        return str(Path(unquote(urlsplit(ref).path)).resolve())
    if "://" in ref:
        raise ManifestError(f"{where}: import.{index}: only relative paths, file:// and https:// are supported")
    if doc.local_dir is None:
        return urljoin(doc.source, ref)
    return str((doc.local_dir / ref).resolve())


def _imports(doc: _Doc) -> list[Any]:
    """The ``import:`` entries of a document (one string or a list)."""
    raw = doc.data.get("import", [])
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list):
        raise ManifestError(f"{doc.at(('import',))}: import: expected a list of paths or URLs")
    return raw


@dataclass
class _Expanded:
    """A document merged with its imports, and the complete manifests met on the way."""

    kind: str | None
    node: _Node
    found: list[tuple[_Doc, str, _Node]] = field(default_factory=list)


async def _expand(ref: str, stack: tuple[str, ...] = ()) -> _Expanded:
    """Read ``ref``, expand its imports depth first, and merge the same-kind ones under it."""
    doc = await _read(ref)
    kind = kind_of(doc)
    base: _Node | None = None
    found: list[tuple[_Doc, str, _Node]] = []
    for index, entry in enumerate(_imports(doc)):
        target = _import_target(doc, entry, index)
        if target in (*stack, ref):
            chain = " -> ".join(map(display, (*stack, ref, target)))
            raise ManifestError(f"{doc.at(('import', index))}: import.{index}: import cycle: {chain}")
        sub = await _expand(target, (*stack, ref))
        found.extend(sub.found)
        if sub.kind is None or sub.kind == kind:
            inherited = {k: v for k, v in sub.node[0].items() if k not in _NOT_INHERITED}
            node = (inherited, sub.node[1])
            base = node if base is None else merge(base, node)
    own = {k: v for k, v in doc.data.items() if k != "import"}
    node = (own, _Origin.of(doc, own))
    if base is not None:
        node = merge(base, node)
    if kind is not None:
        found.append((doc, kind, node))
    return _Expanded(kind, node, found)


# ---- validation ----------------------------------------------------------------------


def _validate(model: type[BaseModel], node: _Node, context: dict[str, Any] | None = None) -> Any:
    """Validate merged data; ManifestError lists every problem as ``source:line: field: message``."""
    data, origin = node
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            name = ".".join(str(part) for part in loc) or "(manifest)"
            lines.append(f"{origin.where(loc)}: {name}: {err['msg'].removeprefix('Value error, ')}")
        raise ManifestError("\n".join(lines)) from exc


def _other_kind(kind: str, doc: _Doc) -> Any:
    """Workflow and relic manifests, loaded by their own modules (from local files, without imports)."""
    if doc.local_dir is None:
        raise ManifestError(f"{doc.at(('kind',))}: kind: {kind} manifests must be local files")
    if kind == "workflow":
        return load_workflow_manifest(Path(doc.ref))
    return load_relic_manifest(Path(doc.ref))


def _build(doc: _Doc, kind: str, node: _Node) -> LoadedManifest:
    """Validate one complete manifest of ``kind``."""
    origin = node[1]
    if kind == "agent":
        agent = _validate(AgentManifest, node)
        manifest: Any = agent.with_origin(doc.local_dir or Path.cwd(), origin.where)
    elif kind == "plugin":
        if doc.local_dir is None:
            raise ManifestError(f"{doc.at(('name',))}: plugin manifests must be local files")
        data = {k: v for k, v in node[0].items() if not (k == "kind" and v == "plugin")}
        plugin = _validate(PluginManifest, (data, origin), {"base_dir": doc.local_dir})
        manifest = plugin.with_directory(doc.local_dir)
    else:
        manifest = _other_kind(kind, doc)
    return LoadedManifest(kind, str(getattr(manifest, "name", "")), doc.source, manifest)


async def load_file(path: str | Path) -> list[LoadedManifest]:
    """Load one file (or https URL) and everything it imports; the file's own manifest comes last."""
    ref = str(path) if str(path).startswith("https://") else str(Path(path).resolve())
    expanded = await _expand(ref)
    if expanded.kind is None and not expanded.found:
        raise ManifestError(f"{display(ref)}:1: kind: missing; expected one of {', '.join(KINDS)}")
    return _unique(_build(doc, kind, node) for doc, kind, node in expanded.found)


def _unique(manifests: Iterable[LoadedManifest]) -> list[LoadedManifest]:
    """Drop repeats of one manifest from one source; two sources defining one name is an error."""
    seen: dict[tuple[str, str], LoadedManifest] = {}
    for item in manifests:
        earlier = seen.get((item.kind, item.name))
        if earlier is not None and earlier.source != item.source:
            raise ManifestError(f"{item.source}: {item.kind} {item.name!r} is also defined in {earlier.source}")
        seen.setdefault((item.kind, item.name), item)
    return list(seen.values())


def manifest_files(path: str | Path) -> list[Path]:
    """The YAML files at ``path``: the file itself, or every ``*.yaml``/``*.yml`` under a folder."""
    path = Path(path)
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()]
        return sorted(p for p in found if not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not path.is_file():
        raise ManifestError(f"{path}: no such file or folder")
    return [path]


def is_fragment(path: Path) -> bool:
    """True for a document with neither ``kind`` nor ``name`` (only used through imports)."""
    try:
        data, _ = load_yaml_with_lines(path)
    except ManifestError:
        return False
    return isinstance(data, dict) and "kind" not in data and "name" not in data and "runtime" not in data


async def load_manifests(path: str | Path) -> list[LoadedManifest]:
    """Every manifest in a file or folder (with their imports); ManifestError lists every problem."""
    files = manifest_files(path)
    single = len(files) == 1 and not Path(path).is_dir()
    loaded: list[LoadedManifest] = []
    errors: list[str] = []
    for file in files:
        if not single and is_fragment(file):
            continue
        try:
            loaded.extend(await load_file(file))
        except ManifestError as exc:
            errors.append(str(exc))
    if not errors:
        try:
            return _unique(loaded)
        except ManifestError as exc:
            errors.append(str(exc))
    raise ManifestError("\n".join(errors))


def plugins_by_name(loaded: Iterable[LoadedManifest]) -> dict[str, PluginManifest]:
    """The plugin manifests of a load, by name (agents may name them in ``plugins``)."""
    return {item.name: item.manifest for item in loaded if item.kind == "plugin"}


async def stored_value(item: LoadedManifest, plugins: dict[str, PluginManifest]) -> Any:
    """What ``cortex apply`` stores for a manifest (for agents: the AgentSpec plus description and feeds)."""
    manifest = item.manifest
    if item.kind == "agent":
        spec = msgspec.to_builtins(await resolve_agent(manifest, plugins))
        spec["description"] = manifest.description
        spec["context_feeds"] = [feed.model_dump(mode="json") for feed in manifest.context_feeds]
        spec["source"] = item.source
        return spec
    if item.kind == "plugin":
        return {**manifest.model_dump(mode="json"), "directory": str(manifest.directory), "source": item.source}
    if item.kind == "workflow":
        return msgspec.to_builtins(await resolve_workflow(manifest, plugins))
    return msgspec.to_builtins(resolve_relic(manifest))
