"""The @tool decorator and the in-process python runtime."""

from __future__ import annotations

import asyncio

import pytest

from cortex.adapters.tools import CallContext, load_runtime
from cortex.adapters.tools.bwrap import BwrapRuntime
from cortex.adapters.tools.docker_runtime import DockerRuntime
from cortex.adapters.tools.mcp_runtime import McpRuntime
from cortex.adapters.tools.python_runtime import PythonRuntime
from cortex.errors import ManifestError, ToolError, ToolTimeout
from cortex.manifests.plugin import PluginManifest
from tests.tools import sample_plugin


def sample(**fields: object) -> PluginManifest:
    """The manifest of tests/tools/sample_plugin.py."""
    data = {
        "name": "sample",
        "version": "1",
        "kind": "system",
        "runtime": "python",
        "module": "tests.tools.sample_plugin",
        "permissions": {"network": ["a.example.org"]},
        **fields,
    }
    return PluginManifest.model_validate(data)


@pytest.fixture
async def runtime() -> PythonRuntime:
    runtime = PythonRuntime(sample())
    await runtime.start()
    return runtime


async def test_schema_and_description_come_from_hints_and_docstring(runtime: PythonRuntime) -> None:
    specs = {s.name: s for s in runtime.tools()}
    add = specs["sample.add"]
    assert add.description == "Add two integers."
    assert add.params_schema == {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "a": {"type": "integer", "description": "The first number."},
            "b": {"type": "integer", "default": 2, "description": "The second number, which defaults to two."},
        },
        "required": ["a"],
    }
    shout = specs["sample.shout"]
    assert shout.params_schema["properties"] == {
        "text": {"type": "string", "minLength": 1, "description": "What to shout."}
    }
    assert (shout.side_effects, shout.idempotent, shout.timeout_s) == ("write", False, 3.0)
    assert specs["sample.hosts"].params_schema["properties"] == {}
    assert "Point" in specs["sample.mirror"].params_schema["$defs"]


async def test_params_are_validated_and_coerced(runtime: PythonRuntime) -> None:
    assert await runtime.call("sample.add", {"a": "3"}, CallContext()) == 5
    assert await runtime.call("add", {"a": 1, "b": 10}, CallContext()) == 11
    with pytest.raises(ToolError, match="invalid params for sample.add: a: "):
        await runtime.call("sample.add", {"a": "three"}, CallContext())
    with pytest.raises(ToolError, match="invalid params for sample.add: c: Extra inputs"):
        await runtime.call("sample.add", {"a": 1, "c": 2}, CallContext())
    with pytest.raises(ToolError, match="invalid params for sample.shout: text"):
        await runtime.call("sample.shout", {"text": ""}, CallContext())


async def test_context_and_permissions_are_injected(runtime: PythonRuntime) -> None:
    reports: list[tuple[str, float | None]] = []

    async def progress(message: str, fraction: float | None) -> None:
        reports.append((message, fraction))

    ctx = CallContext(run_id="run-7", action_id="a1", progress=progress)
    assert await runtime.call("sample.shout", {"text": "hi"}, ctx) == {"text": "HI", "run": "run-7"}
    assert reports == [("shouting", 0.5)]
    assert await runtime.call("sample.hosts", {}, CallContext()) == ["a.example.org"]


async def test_models_in_and_out(runtime: PythonRuntime) -> None:
    assert await runtime.call("sample.mirror", {"p": {"x": 1, "y": 2}}, CallContext()) == {"x": 2, "y": 1}


async def test_sync_tools_run_off_the_event_loop(runtime: PythonRuntime) -> None:
    sample_plugin.FLAG.clear()
    call = asyncio.create_task(runtime.call("sample.wait_for_flag", {"seconds": 5}, CallContext()))
    await asyncio.sleep(0)  # let the call begin; were it on the loop, the loop would now be stuck in wait()
    sample_plugin.FLAG.set()
    assert await call is True


async def test_timeouts(runtime: PythonRuntime) -> None:
    with pytest.raises(ToolTimeout, match="sample.slow"):
        await runtime.call("sample.slow", {"seconds": 30}, CallContext(timeout_s=0.1))
    sample_plugin.FLAG.clear()
    try:
        with pytest.raises(ToolTimeout, match="sample.wait_for_flag"):
            await runtime.call("sample.wait_for_flag", {"seconds": 30}, CallContext(timeout_s=0.1))
    finally:
        sample_plugin.FLAG.set()  # release the worker thread


async def test_failures_become_tool_errors(runtime: PythonRuntime) -> None:
    with pytest.raises(ToolError, match="sample.boom failed: RuntimeError: kaboom"):
        await runtime.call("sample.boom", {}, CallContext())
    with pytest.raises(ToolError, match="not JSON-able"):
        await runtime.call("sample.opaque", {}, CallContext())
    with pytest.raises(ToolError, match="has no tool 'other.add'"):
        await runtime.call("other.add", {"a": 1}, CallContext())


async def test_manifest_narrows_and_overrides_tools() -> None:
    runtime = PythonRuntime(sample(tools=[{"name": "add", "timeout_s": 9, "description": "Sum."}]))
    await runtime.start()
    assert [(s.name, s.timeout_s, s.description) for s in runtime.tools()] == [("sample.add", 9.0, "Sum.")]


@pytest.mark.parametrize(
    ("tools", "fragment"),
    [([{"name": "teleport"}], "no such @tool"), ([{"name": "add", "params": {"type": "object"}}], "type hints")],
)
async def test_manifest_mismatch_is_a_manifest_error(tools: list[dict], fragment: str) -> None:
    with pytest.raises(ManifestError, match=fragment):
        await PythonRuntime(sample(tools=tools)).start()


async def test_unimportable_module_is_a_manifest_error() -> None:
    with pytest.raises(ManifestError, match="cannot import"):
        await PythonRuntime(sample(module="tests.tools.no_such_module")).start()


def test_load_runtime_picks_the_runtime_the_manifest_names() -> None:
    base = {"name": "p", "version": "1"}
    cases = [
        (sample(), PythonRuntime),
        (PluginManifest.model_validate({**base, "runtime": "subprocess", "command": ["x"]}), BwrapRuntime),
        (PluginManifest.model_validate({**base, "runtime": "docker", "image": "alpine"}), DockerRuntime),
        (PluginManifest.model_validate({**base, "runtime": "mcp", "command": ["x"]}), McpRuntime),
    ]
    for manifest, kind in cases:
        assert type(load_runtime(manifest)) is kind
