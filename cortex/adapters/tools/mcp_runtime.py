"""The mcp runtime: an MCP server started over stdio; its tools become plugin tools.

One background task owns the ``mcp.Client`` (its anyio scopes must open and close in the
same task); calls from any task go through the connected client. All ``mcp`` errors are
mapped to ToolError here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from typing import Any, TextIO, cast

import mcp_types
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from cortex.adapters.tools.base import CallContext, call_timeout, find_spec, short_name
from cortex.errors import ManifestError, SandboxError, ToolError, ToolTimeout
from cortex.manifests.plugin import PluginManifest, SideEffects, ToolDecl
from cortex.specs import ToolSpec

STDERR_TAIL = 2000


class McpRuntime:
    """Starts the manifest's command as an MCP server and calls its tools over stdio."""

    def __init__(self, manifest: PluginManifest, *, startup_timeout_s: float = 30.0) -> None:
        self.manifest = manifest
        self.startup_timeout_s = startup_timeout_s
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._errlog: TextIO | None = None
        self._specs: list[ToolSpec] = []

    async def start(self) -> None:
        """Start the server, shake hands and list its tools; SandboxError if it does not come up."""
        m = self.manifest
        program = m.command[0]
        if "/" in program and not os.path.isabs(program):
            program = str(m.directory / program)
        params = StdioServerParameters(
            command=program,
            args=list(m.command[1:]),
            env={k: os.environ[k] for k in m.permissions.env if k in os.environ},
            cwd=m.directory,
        )
        self._errlog = cast(TextIO, tempfile.TemporaryFile("w+", encoding="utf-8"))  # noqa: SIM115 - lives until close()
        self._stop = asyncio.Event()
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._serve(params, ready), name=f"mcp:{m.name}")
        try:
            async with asyncio.timeout(self.startup_timeout_s):
                self._client = await asyncio.shield(ready)
                listed = await self._list_tools(self._client)
        except Exception as exc:  # noqa: BLE001 - whatever stops the handshake means "did not start"
            detail = f"{_describe(exc)}{self._stderr()}"
            await self.close()
            raise SandboxError(f"MCP server of plugin {m.name} did not start: {detail}") from exc
        try:
            self._specs = self._resolve(listed)
        except ManifestError:
            await self.close()
            raise

    def tools(self) -> list[ToolSpec]:
        """The server's tools (or the subset the manifest lists), named ``<plugin>.<tool>``."""
        return list(self._specs)

    async def call(self, tool: str, params: dict[str, Any], ctx: CallContext) -> Any:
        """Call one tool; ``isError`` results, protocol errors and a dead server raise ToolError."""
        spec = find_spec(self._specs, self.manifest, tool)
        client = self._client
        if client is None or self._task is None or self._task.done():
            raise ToolError(f"{spec.name}: the MCP server is not running{self._stderr()}")
        timeout = call_timeout(spec, ctx)

        async def forward(progress: float, total: float | None, message: str | None) -> None:
            await ctx.progress(message or "", progress / total if total else None)

        try:
            async with asyncio.timeout(timeout):
                result = await client.call_tool(short_name(spec), params, progress_callback=forward)
        except TimeoutError as exc:
            raise ToolTimeout(f"{spec.name} ran past its {timeout:g}s limit") from exc
        except MCPError as exc:
            raise ToolError(f"{spec.name} failed: {exc.message}{self._stderr()}") from exc
        except Exception as exc:  # noqa: BLE001 - transport failures (a crashed server) become ToolError
            raise ToolError(f"{spec.name} failed: {_describe(exc)}{self._stderr()}") from exc
        return _result(spec.name, result)

    async def close(self) -> None:
        """Stop the server (closing stdin, then terminating its process tree)."""
        self._stop.set()
        if self._task is not None:
            if self._client is None:  # still connecting: nobody will see the stop event
                self._task.cancel()
            await asyncio.wait({self._task})
            self._task = None
        self._client = None
        if self._errlog is not None:
            self._errlog.close()
            self._errlog = None

    async def _serve(self, params: StdioServerParameters, ready: asyncio.Future[Client]) -> None:
        """Own the client for its whole life: connect, hand it over, wait for close."""
        try:
            errlog = self._errlog if self._errlog is not None else sys.stderr
            async with Client(stdio_client(params, errlog=errlog), cache=None) as client:
                ready.set_result(client)
                await self._stop.wait()
        except Exception as exc:  # noqa: BLE001 - reported through ``ready`` or later calls
            if not ready.done():
                ready.set_exception(exc)

    async def _list_tools(self, client: Client) -> list[mcp_types.Tool]:
        """Every tool the server lists, following pagination."""
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                return tools

    def _resolve(self, listed: list[mcp_types.Tool]) -> list[ToolSpec]:
        """Specs from the server's tools, narrowed to and overridden by the manifest's entries."""
        by_name = {t.name: t for t in listed}
        missing = [d.name for d in self.manifest.tools if d.name not in by_name]
        if missing:
            raise ManifestError(
                f"plugin {self.manifest.name}: the MCP server has no tools {missing} (it has {sorted(by_name)})"
            )
        names = [d.name for d in self.manifest.tools] or list(by_name)
        specs = []
        for name in names:
            derived = _decl(by_name[name])
            declared = self.manifest.declared(name)
            if declared is not None:
                derived = derived.model_copy(update=declared.model_dump(exclude_unset=True, exclude={"name"}))
            specs.append(self.manifest.tool_spec(derived))
        return specs

    def _stderr(self) -> str:
        """The tail of what the server wrote on stderr, for error messages."""
        if self._errlog is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            fd = self._errlog.fileno()  # the server writes here; pread leaves the shared offset alone
            size = os.fstat(fd).st_size
            start = max(0, size - 4 * STDERR_TAIL)
            tail = os.pread(fd, size - start, start).decode("utf-8", "replace")[-STDERR_TAIL:].strip()
            if tail:
                return f"; server stderr: {tail}"
        return ""


def _decl(tool: mcp_types.Tool) -> ToolDecl:
    """A declaration from an MCP tool listing, honouring its read-only and idempotent hints."""
    hints = tool.annotations
    side_effects: SideEffects | None = None
    if hints is not None and hints.read_only_hint is not None:
        side_effects = "read_only" if hints.read_only_hint else "write"
    return ToolDecl(
        name=tool.name,
        description=tool.description or "",
        params=tool.input_schema,
        idempotent=hints.idempotent_hint if hints is not None else None,
        side_effects=side_effects,
    )


def _result(name: str, result: mcp_types.CallToolResult) -> Any:
    """The JSON-able result: structured content if present, else the text parts joined."""
    texts = [c.text for c in result.content if isinstance(c, mcp_types.TextContent)]
    if result.is_error:
        raise ToolError(f"{name} failed: {' '.join(texts) or 'the server reported an error'}")
    if result.structured_content is not None:
        return result.structured_content
    others = [
        c.model_dump(mode="json", by_alias=True, exclude_none=True)
        for c in result.content
        if not isinstance(c, mcp_types.TextContent)
    ]
    text = "\n".join(texts)
    return {"text": text, "content": others} if others else text


def _describe(exc: BaseException) -> str:
    """A readable one-liner for an exception, unwrapping exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError):
        return exc.message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
