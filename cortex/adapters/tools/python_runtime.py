"""The python runtime: trusted system plugins run in process; blocking tools run off the event loop."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from typing import Any

from pydantic_core import PydanticSerializationError, to_jsonable_python

from cortex.adapters.tools.base import CallContext, call_timeout, find_spec, short_name
from cortex.adapters.tools.decorator import ToolFunction, tools_in
from cortex.errors import ManifestError, ToolError, ToolTimeout
from cortex.manifests.plugin import Permissions, PluginManifest, ToolDecl
from cortex.specs import ToolSpec


class PythonRuntime:
    """Runs the ``@tool`` functions of the manifest's module inside this process.

    A sync tool runs in a worker thread; at its timeout the caller gets ``ToolTimeout`` but the
    thread cannot be killed and finishes on its own — only trusted, bounded code belongs here.
    """

    def __init__(self, manifest: PluginManifest) -> None:
        self.manifest = manifest
        self._functions: dict[str, ToolFunction] = {}
        self._specs: list[ToolSpec] = []

    async def start(self) -> None:
        """Import the module and resolve its tools against the manifest's declarations."""
        module_path = self.manifest.module or ""
        try:
            module = importlib.import_module(module_path)
        except ImportError as exc:
            raise ManifestError(f"plugin {self.manifest.name}: cannot import module {module_path}: {exc}") from exc
        found = {f.name: f for f in tools_in(module)}
        undefined = [d.name for d in self.manifest.tools if d.name not in found]
        if undefined:
            raise ManifestError(
                f"plugin {self.manifest.name}: tools {undefined} are declared but {module_path} has no such @tool"
            )
        with_params = [d.name for d in self.manifest.tools if d.params is not None]
        if with_params:
            raise ManifestError(
                f"plugin {self.manifest.name}: tools {with_params} declare params, but python tools"
                " take their schema from type hints"
            )
        wanted = [d.name for d in self.manifest.tools] or list(found)
        self._functions = {name: found[name] for name in wanted}
        self._specs = [self.manifest.tool_spec(_merge(found[n].decl(), self.manifest.declared(n))) for n in wanted]

    def tools(self) -> list[ToolSpec]:
        """The tools offered, named ``<plugin>.<tool>``."""
        return list(self._specs)

    async def call(self, tool: str, params: dict[str, Any], ctx: CallContext) -> Any:
        """Validate params, run the function within its timeout, return a JSON-able result."""
        spec = find_spec(self._specs, self.manifest, tool)
        function = self._functions[short_name(spec)]
        injections: dict[type, Any] = {CallContext: ctx, Permissions: self.manifest.permissions}
        kwargs = function.bind(spec.name, params, injections)
        timeout = call_timeout(spec, ctx)
        if inspect.iscoroutinefunction(function.fn):
            work = function.fn(**kwargs)
        else:
            work = asyncio.to_thread(function.fn, **kwargs)
        try:
            result = await asyncio.wait_for(work, timeout)
        except TimeoutError as exc:
            raise ToolTimeout(f"{spec.name} ran past its {timeout:g}s limit") from exc
        except ToolError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of tool code becomes a ToolError
            raise ToolError(f"{spec.name} failed: {type(exc).__name__}: {exc}") from exc
        try:
            return to_jsonable_python(result)
        except PydanticSerializationError as exc:
            raise ToolError(f"{spec.name} returned a value that is not JSON-able: {exc}") from exc

    async def close(self) -> None:
        """Nothing to release: the module stays imported."""


def _merge(derived: ToolDecl, declared: ToolDecl | None) -> ToolDecl:
    """Manifest entries override what the decorator derived, field by field (params never)."""
    if declared is None:
        return derived
    overrides = declared.model_dump(exclude_unset=True, exclude={"name", "params"})
    return derived.model_copy(update=overrides)
