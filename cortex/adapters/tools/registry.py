"""Pick the runtime a plugin manifest asks for."""

from __future__ import annotations

from cortex.adapters.tools.base import ToolRuntime
from cortex.manifests.plugin import PluginManifest


def load_runtime(manifest: PluginManifest) -> ToolRuntime:
    """A not-yet-started runtime for ``manifest`` (call ``await runtime.start()`` next)."""
    if manifest.runtime == "python":
        from cortex.adapters.tools.python_runtime import PythonRuntime

        return PythonRuntime(manifest)
    if manifest.runtime == "subprocess":
        from cortex.adapters.tools.bwrap import BwrapRuntime

        return BwrapRuntime(manifest)
    if manifest.runtime == "docker":
        from cortex.adapters.tools.docker_runtime import DockerRuntime

        return DockerRuntime(manifest)
    from cortex.adapters.tools.mcp_runtime import McpRuntime

    return McpRuntime(manifest)
