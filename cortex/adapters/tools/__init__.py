"""Tool runtimes: in-process python, bubblewrap subprocess, docker, MCP servers; plus built-in plugins.

Public API::

    runtime = load_runtime(load_plugin_manifest(path))   # or builtin_manifests()
    await runtime.start()
    runtime.tools()                                      # list[ToolSpec], names "<plugin>.<tool>"
    await runtime.call("text.count", {"text": "a b"}, CallContext(run_id=..., action_id=...))
    await runtime.close()
"""

from cortex.adapters.tools.base import CallContext, ToolRuntime
from cortex.adapters.tools.decorator import tool
from cortex.adapters.tools.registry import load_runtime

__all__ = ["CallContext", "ToolRuntime", "load_runtime", "tool"]
