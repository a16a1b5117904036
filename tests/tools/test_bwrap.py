"""The subprocess runtime under real bubblewrap: every limit is tried for real, from inside."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from cortex.adapters.tools.base import CallContext
from cortex.adapters.tools.bwrap import BwrapRuntime
from cortex.errors import ToolError, ToolTimeout
from cortex.manifests.plugin import PluginManifest, load_plugin_manifest
from tests.tools.conftest import SANDBOX_TOOLS, needs_bwrap, processes_with

pytestmark = needs_bwrap

PROBE_TOOLS = ["echo", "connect", "write", "forkbomb", "hog", "spin", "sleeper", "environ", "fail", "garbage", "flood"]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugins" / "wordstats" / "plugin.yaml"


def probe(command_extra: tuple[str, ...] = (), **fields: Any) -> PluginManifest:
    """A manifest for tests/tools/sandbox_tools/probe.py with the given overrides."""
    data: dict[str, Any] = {
        "name": "probe",
        "version": "1",
        "runtime": "subprocess",
        "command": ("python3", "probe.py", *command_extra),
        "tools": [{"name": name} for name in PROBE_TOOLS],
        "limits": {"timeout_s": 20, "memory_mb": 256, "cpu_s": 10, "processes": 16},
    }
    data.update(fields)
    return PluginManifest.model_validate(data).with_directory(SANDBOX_TOOLS)


async def started(manifest: PluginManifest) -> BwrapRuntime:
    """A started runtime (start() proves bwrap can build the sandbox here)."""
    runtime = BwrapRuntime(manifest)
    await runtime.start()
    return runtime


async def peak_count(marker: str, done: asyncio.Event, seen: list[int]) -> None:
    """Record how many processes carry ``marker`` until ``done`` is set."""
    while not done.is_set():
        seen.append(len(processes_with(marker)))
        await asyncio.sleep(0.02)


async def gone(marker: str, deadline_s: float = 5.0) -> bool:
    """Poll until no process carries ``marker``; False if some survive the deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not processes_with(marker):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_params_in_result_out_as_an_unprivileged_user() -> None:
    runtime = await started(probe())
    result = await runtime.call("probe.echo", {"question": "who?", "n": [1, 2]}, CallContext())
    assert result["params"] == {"question": "who?", "n": [1, 2]}
    assert result["uid"] != 0
    assert result["cwd"] == str(SANDBOX_TOOLS)
    assert [s.name for s in runtime.tools()][:2] == ["probe.echo", "probe.connect"]


async def test_network_denied_unless_granted() -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello-from-the-host")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        params = {"host": "127.0.0.1", "port": port}
        denied = await (await started(probe())).call("connect", params, CallContext())
        granted_runtime = await started(probe(permissions={"network": ["127.0.0.1"]}))
        granted = await granted_runtime.call("connect", params, CallContext())
    finally:
        server.close()
        await server.wait_closed()
    assert denied["connected"] is False, denied
    assert "ConnectionRefused" in denied["error"] or "unreachable" in denied["error"].lower()
    assert granted == {"connected": True, "banner": "hello-from-the-host"}


async def test_writes_land_only_in_the_write_grant(open_dir) -> None:
    writable, readable, elsewhere = open_dir(), open_dir(), open_dir()
    manifest = probe(permissions={"filesystem": {"read": [str(readable)], "write": [str(writable)]}})
    targets = [writable / "ok.txt", readable / "no.txt", elsewhere / "no.txt", SANDBOX_TOOLS / "no.txt"]
    result = await (await started(manifest)).call("write", {"paths": [str(t) for t in targets]}, CallContext())
    assert result[str(targets[0])] == "ok"
    assert (writable / "ok.txt").read_text() == "written from the sandbox"
    assert "Read-only file system" in result[str(targets[1])]
    assert "No such file or directory" in result[str(targets[2])]
    assert "Read-only file system" in result[str(targets[3])]
    assert not any(t.exists() for t in targets[1:])


async def test_fork_bomb_is_contained_and_cleaned_up() -> None:
    marker = f"bomb-{uuid.uuid4().hex}"
    limit = 12
    runtime = await started(probe((marker,), limits={"processes": limit, "timeout_s": 30, "cpu_s": 30}))
    done, seen = asyncio.Event(), []
    watcher = asyncio.create_task(peak_count(marker, done, seen))
    with pytest.raises(ToolTimeout):
        await runtime.call("forkbomb", {}, CallContext(timeout_s=3))
    done.set()
    await watcher
    # The bomb really forked up to the limit, and never past it (+2: bwrap's own two processes).
    assert limit - 4 <= max(seen) <= limit + 2, seen
    assert await gone(marker), processes_with(marker)
    assert (await runtime.call("echo", {}, CallContext()))["params"] == {}


async def test_memory_hog_is_stopped_at_the_memory_limit() -> None:
    runtime = await started(probe(limits={"memory_mb": 256}))
    assert await runtime.call("hog", {"mb": 32}, CallContext()) == {"allocated_mb": 32}
    with pytest.raises(ToolError) as caught:
        await runtime.call("hog", {"mb": 2048}, CallContext())
    assert "MemoryError" in str(caught.value)


async def test_cpu_spinner_is_killed_at_the_cpu_limit() -> None:
    runtime = await started(probe(limits={"cpu_s": 1, "timeout_s": 30}))
    with pytest.raises(ToolError) as caught:
        await runtime.call("spin", {}, CallContext())
    assert "SIGXCPU" in str(caught.value) and not isinstance(caught.value, ToolTimeout)


async def test_sleeper_tree_is_killed_at_its_timeout() -> None:
    marker = f"sleeper-{uuid.uuid4().hex}"
    runtime = await started(probe())
    done, seen = asyncio.Event(), []
    watcher = asyncio.create_task(peak_count(marker, done, seen))
    started_at = time.monotonic()
    with pytest.raises(ToolTimeout):
        await runtime.call("sleeper", {"marker": marker}, CallContext(timeout_s=1.5))
    done.set()
    await watcher
    assert time.monotonic() - started_at < 60  # the sleepers would sleep 600 s
    assert max(seen) == 2, seen  # parent and child were both running
    assert await gone(marker), processes_with(marker)


async def test_only_granted_environment_variables_reach_the_tool(monkeypatch) -> None:
    monkeypatch.setenv("PROBE_GRANTED", "yes")
    monkeypatch.setenv("PROBE_SECRET", "no")
    runtime = await started(probe(permissions={"env": ["PROBE_GRANTED", "PROBE_UNSET"]}))
    env = await runtime.call("environ", {}, CallContext())
    assert env["PROBE_GRANTED"] == "yes"
    assert "PROBE_SECRET" not in env and "PROBE_UNSET" not in env
    assert env["CORTEX_TOOL"] == "environ"


async def test_failures_become_tool_errors() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    runtime = await started(probe(tools=[{"name": "fail"}, {"name": "garbage"}, {"name": "echo", "params": schema}]))
    with pytest.raises(ToolError, match="status 3.*something went wrong: disk full"):
        await runtime.call("fail", {"why": "disk full"}, CallContext())
    with pytest.raises(ToolError, match="did not write one JSON value"):
        await runtime.call("garbage", {}, CallContext())
    with pytest.raises(ToolError, match="invalid params for probe.echo: n: 'x' is not of type 'integer'"):
        await runtime.call("echo", {"n": "x"}, CallContext())
    with pytest.raises(ToolError, match="has no tool 'nope'"):
        await runtime.call("nope", {}, CallContext())


async def test_output_flood_is_cut_off_and_the_sandbox_killed() -> None:
    runtime = BwrapRuntime(probe(), max_output_bytes=1000)
    await runtime.start()
    with pytest.raises(ToolError, match="wrote more than 1000 bytes") as caught:
        await runtime.call("flood", {}, CallContext(timeout_s=20))
    assert not isinstance(caught.value, ToolTimeout)


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid pool is used only when Cortex runs as root")
async def test_concurrent_sandboxes_run_as_distinct_uids() -> None:
    runtime = await started(probe())
    results = await asyncio.gather(*(runtime.call("echo", {}, CallContext()) for _ in range(3)))
    assert len({r["uid"] for r in results}) == 3


async def test_example_plugin_reports_progress_and_writes_its_grant(open_dir, monkeypatch) -> None:
    out = open_dir()
    monkeypatch.setenv("WORDSTATS_OUT", str(out))
    monkeypatch.setenv("WORDSTATS_STOPWORDS", "the,a")
    runtime = await started(load_plugin_manifest(EXAMPLE))
    reports: list[tuple[str, float | None]] = []

    async def progress(message: str, fraction: float | None) -> None:
        reports.append((message, fraction))

    text = "the cat saw a cat and the dog saw the cat"
    result = await runtime.call("wordstats.top_words", {"text": text, "n": 2}, CallContext(progress=progress))
    assert result == {"words": [{"word": "cat", "count": 3}, {"word": "saw", "count": 2}], "total": 7}
    assert reports and reports[-1][1] == 1.0 and reports[-1][0].startswith("counted")
    saved = await runtime.call("wordstats.save_report", {"text": text, "name": "r1"}, CallContext())
    assert saved["path"] == str(out / "r1.json") and (out / "r1.json").is_file()
    spec = {s.name: s for s in runtime.tools()}["wordstats.save_report"]
    assert (spec.side_effects, spec.idempotent) == ("write", False)
