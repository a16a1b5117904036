"""The protocol between Cortex and a tool process (subprocess and docker runtimes).

Params go in as one JSON object on stdin and the tool's name is the command's last argument
(and ``CORTEX_TOOL``); ``CORTEX_READ_PATHS``/``CORTEX_WRITE_PATHS`` list the granted paths;
the result comes back as one JSON value on stdout; exit status 0 means success, anything else
is a ToolError carrying the tail of stderr. A stderr line ``@progress <fraction|-> <message>``
reports progress while the tool runs.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from cortex.errors import ToolError
from cortex.manifests.plugin import PluginManifest

STDERR_TAIL = 4000
PROGRESS_PREFIX = "@progress "


def tool_environment(manifest: PluginManifest, tool: str | None) -> dict[str, str]:
    """What a tool process learns from its environment: its name, its grants, the granted variables."""
    grants = manifest.permissions
    env = {
        "CORTEX_READ_PATHS": os.pathsep.join(str(p) for p in grants.filesystem.read),
        "CORTEX_WRITE_PATHS": os.pathsep.join(str(p) for p in grants.filesystem.write),
    }
    if tool is not None:
        env["CORTEX_TOOL"] = tool
    if grants.network_granted:
        env["CORTEX_ALLOWED_HOSTS"] = ",".join(grants.network)
    env.update({name: os.environ[name] for name in grants.env if name in os.environ})
    return env


def decode_result(name: str, code: int, stdout: bytes, stderr: str, manifest: PluginManifest) -> Any:
    """The tool's JSON result, or ToolError explaining the exit status with the tail of stderr."""
    if code != 0:
        raise ToolError(f"{name} {describe_exit(code, manifest)}; stderr: {stderr.strip()[-STDERR_TAIL:]}")
    try:
        return json.loads(stdout)
    except ValueError as exc:
        raise ToolError(f"{name} did not write one JSON value on stdout: {stdout[:200]!r}") from exc


def describe_exit(code: int, manifest: PluginManifest) -> str:
    """Explain an exit status (negative or above 128: a signal), naming the limit it points to."""
    sig = -code if code < 0 else code - 128 if code > 128 else 0
    if not sig:
        return f"exited with status {code}"
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    if sig == signal.SIGXCPU:
        return f"was killed by {name}: CPU time limit of {manifest.limits.cpu_s}s reached"
    return f"was killed by {name}"


def parse_progress(line: str) -> tuple[float | None, str] | None:
    """``@progress 0.5 message`` -> (0.5, "message"); ``-`` means unknown; None if not a progress line."""
    if not line.startswith(PROGRESS_PREFIX):
        return None
    head, _, message = line[len(PROGRESS_PREFIX) :].strip().partition(" ")
    try:
        return min(max(float(head), 0.0), 1.0), message.strip()
    except ValueError:
        return None, (message if head == "-" else f"{head} {message}").strip()
