"""The mcp runtime against real MCP servers from PyPI: mcp-server-time and mcp-server-sqlite."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from cortex.adapters.tools.base import CallContext
from cortex.adapters.tools.mcp_runtime import McpRuntime
from cortex.errors import ManifestError, SandboxError, ToolError, ToolTimeout
from cortex.manifests.plugin import PluginManifest
from tests.tools.conftest import processes_with

REPO = Path(__file__).resolve().parents[2]
TIME_SERVER = Path(sys.prefix) / "bin" / "mcp-server-time"
# mcp-server-sqlite 2025.4.25 (the newest) is written against mcp 1.x and fails to start under
# mcp 2.x, so it lives in its own venv: python -m venv .venv-mcp-sqlite &&
# .venv-mcp-sqlite/bin/pip install "mcp<2" mcp-server-sqlite
SQLITE_SERVER = Path(os.environ.get("CORTEX_TEST_MCP_SQLITE", REPO / ".venv-mcp-sqlite/bin/mcp-server-sqlite"))

needs_sqlite_server = pytest.mark.skipif(
    not SQLITE_SERVER.exists(),
    reason=f"mcp-server-sqlite not found at {SQLITE_SERVER} (see the comment above SQLITE_SERVER)",
)


def mcp_manifest(name: str, *command: str, **fields: object) -> PluginManifest:
    """An mcp plugin manifest for ``command``."""
    return PluginManifest.model_validate({"name": name, "version": "1", "runtime": "mcp", "command": command, **fields})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def time_server() -> AsyncIterator[McpRuntime]:
    """A started runtime on mcp-server-time, shared by the read-only tests of this module."""
    runtime = McpRuntime(mcp_manifest("clock", str(TIME_SERVER)))
    await runtime.start()
    yield runtime
    await runtime.close()


@pytest.fixture
async def sqlite_server(tmp_path: Path) -> AsyncIterator[tuple[McpRuntime, Path]]:
    """A started runtime on mcp-server-sqlite with a fresh database file."""
    db = tmp_path / "cortex-mcp-test.db"
    runtime = McpRuntime(mcp_manifest("db", str(SQLITE_SERVER), "--db-path", str(db)))
    await runtime.start()
    yield runtime, db
    await runtime.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_time_server_tools_are_listed_with_their_schemas(time_server: McpRuntime) -> None:
    specs = {s.name: s for s in time_server.tools()}
    assert {"clock.get_current_time", "clock.convert_time"} <= set(specs)
    spec = specs["clock.get_current_time"]
    assert spec.plugin == "clock"
    assert spec.params_schema["required"] == ["timezone"]
    assert "timezone" in spec.params_schema["properties"]


@pytest.mark.asyncio(loop_scope="module")
async def test_time_server_call_returns_structured_content(time_server: McpRuntime) -> None:
    result = await time_server.call("clock.get_current_time", {"timezone": "Asia/Tokyo"}, CallContext())
    assert result["timezone"] == "Asia/Tokyo"
    assert result["datetime"].endswith("+09:00")


@pytest.mark.asyncio(loop_scope="module")
async def test_is_error_result_becomes_tool_error(time_server: McpRuntime) -> None:
    with pytest.raises(ToolError, match="Invalid timezone"):
        await time_server.call("get_current_time", {"timezone": "Mars/Olympus_Mons"}, CallContext())


async def test_manifest_can_narrow_the_server_tools() -> None:
    runtime = McpRuntime(mcp_manifest("clock", str(TIME_SERVER), tools=[{"name": "convert_time", "timeout_s": 5}]))
    await runtime.start()
    try:
        assert [(s.name, s.timeout_s) for s in runtime.tools()] == [("clock.convert_time", 5.0)]
        with pytest.raises(ToolError, match="has no tool"):
            await runtime.call("get_current_time", {"timezone": "UTC"}, CallContext())
    finally:
        await runtime.close()


async def test_manifest_naming_a_missing_tool_is_a_manifest_error() -> None:
    runtime = McpRuntime(mcp_manifest("clock", str(TIME_SERVER), tools=[{"name": "teleport"}]))
    with pytest.raises(ManifestError, match="teleport"):
        await runtime.start()


async def test_server_that_dies_at_startup_is_a_sandbox_error_with_its_stderr() -> None:
    runtime = McpRuntime(mcp_manifest("broken", "/bin/sh", "-c", "echo 'no config file' >&2; exit 3"))
    with pytest.raises(SandboxError, match="no config file"):
        await runtime.start()


async def test_server_that_never_answers_times_out_at_startup_and_is_stopped() -> None:
    marker = f"silent-{uuid.uuid4().hex}"
    command = (sys.executable, "-c", "import time; time.sleep(300)", marker)
    runtime = McpRuntime(mcp_manifest("silent", *command), startup_timeout_s=1)
    with pytest.raises(SandboxError, match="did not start: TimeoutError"):
        await runtime.start()
    assert processes_with(marker) == []


@needs_sqlite_server
async def test_sqlite_server_writes_and_reads(sqlite_server: tuple[McpRuntime, Path]) -> None:
    runtime, db = sqlite_server
    assert {"db.read_query", "db.write_query", "db.create_table", "db.list_tables"} <= {s.name for s in runtime.tools()}
    ctx = CallContext()
    await runtime.call("db.create_table", {"query": "CREATE TABLE notes (id INTEGER, body TEXT)"}, ctx)
    await runtime.call("db.write_query", {"query": "INSERT INTO notes VALUES (1, 'from cortex')"}, ctx)
    assert "from cortex" in await runtime.call("db.read_query", {"query": "SELECT body FROM notes"}, ctx)
    with sqlite3.connect(db) as conn:  # the server really wrote the file
        assert conn.execute("SELECT body FROM notes").fetchall() == [("from cortex",)]


@needs_sqlite_server
async def test_sqlite_error_without_is_error_flag_passes_through(sqlite_server: tuple[McpRuntime, Path]) -> None:
    runtime, _ = sqlite_server
    # This server reports refusals as plain text (no isError), so they are ordinary results.
    result = await runtime.call("db.read_query", {"query": "DELETE FROM nothing"}, CallContext())
    assert result == "Error: Only SELECT queries are allowed for read_query"


@needs_sqlite_server
async def test_crashed_server_becomes_tool_error(sqlite_server: tuple[McpRuntime, Path]) -> None:
    runtime, db = sqlite_server
    pids = processes_with(str(db))
    assert pids, "the server process should be running"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(ToolError):
        async with asyncio.timeout(20):
            await runtime.call("db.list_tables", {}, CallContext())


@needs_sqlite_server
async def test_slow_call_times_out(sqlite_server: tuple[McpRuntime, Path]) -> None:
    runtime, _ = sqlite_server
    endless = "SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c)"
    with pytest.raises(ToolTimeout):
        await runtime.call("db.read_query", {"query": endless}, CallContext(timeout_s=1))
