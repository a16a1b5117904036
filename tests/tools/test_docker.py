"""The docker runtime: the permission model as container options, and real runs where an engine exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cortex.adapters.tools.base import CallContext
from cortex.adapters.tools.docker_runtime import DockerRuntime, container_options
from cortex.errors import DockerUnavailable, ToolError, ToolTimeout
from cortex.manifests.plugin import PluginManifest
from tests.tools.conftest import SANDBOX_TOOLS


def _engine_answers() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no engine"
        return False


needs_engine = pytest.mark.skipif(
    not _engine_answers(),
    reason="no Docker engine answers here (the docker client is installed, but nothing can run)",
)


def docker_probe(**fields: Any) -> PluginManifest:
    """probe.py in a stock Python image, with the probe directory mounted read-only."""
    data: dict[str, Any] = {
        "name": "probe",
        "version": "1",
        "runtime": "docker",
        "image": "python:3.12-alpine",
        "command": ["python3", str(SANDBOX_TOOLS / "probe.py")],
        "tools": [{"name": n} for n in ("echo", "connect", "write", "hog", "sleeper")],
        "permissions": {"filesystem": {"read": [str(SANDBOX_TOOLS)]}},
        "limits": {"timeout_s": 60, "memory_mb": 128, "processes": 32, "cpus": 0.5},
    }
    data.update(fields)
    return PluginManifest.model_validate(data)


def test_container_options_enforce_the_permission_model(tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = docker_probe(
        permissions={"filesystem": {"read": [str(SANDBOX_TOOLS)], "write": [str(out)]}, "env": ["X"]}
    )
    options = container_options(manifest, "echo", {"X": "1"})
    assert options["network_mode"] == "none"
    assert options["read_only"] is True and "/tmp" in options["tmpfs"]
    assert options["volumes"] == {
        str(SANDBOX_TOOLS): {"bind": str(SANDBOX_TOOLS), "mode": "ro"},
        str(out.resolve()): {"bind": str(out.resolve()), "mode": "rw"},
    }
    assert (options["mem_limit"], options["memswap_limit"], options["pids_limit"]) == ("128m", "128m", 32)
    assert options["nano_cpus"] == 500_000_000
    assert options["command"][-1] == "echo" and options["environment"] == {"X": "1"}
    assert options["user"] != "0" and options["cap_drop"] == ["ALL"]
    granted = container_options(docker_probe(permissions={"network": ["example.org"]}), "echo", {})
    assert granted["network_mode"] == "bridge"


async def test_no_engine_means_docker_unavailable(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    runtime = DockerRuntime(docker_probe())
    with pytest.raises(DockerUnavailable, match="no Docker engine answers"):
        await runtime.start()


@needs_engine
@pytest.mark.docker
async def test_docker_round_trip_and_limits(tmp_path: Path) -> None:
    runtime = DockerRuntime(docker_probe())
    await runtime.start()
    try:
        result = await runtime.call("echo", {"n": 1}, CallContext())
        assert result["params"] == {"n": 1} and result["uid"] != 0
        denied = await runtime.call("connect", {"host": "1.1.1.1", "port": 53}, CallContext())
        assert denied["connected"] is False
        writes = await runtime.call("write", {"paths": [str(SANDBOX_TOOLS / "x"), "/etc/x"]}, CallContext())
        assert all(v != "ok" for v in writes.values())
        with pytest.raises(ToolError):
            await runtime.call("hog", {"mb": 1024}, CallContext())
        with pytest.raises(ToolTimeout):
            await runtime.call("sleeper", {"marker": "docker-sleeper"}, CallContext(timeout_s=3))
    finally:
        await runtime.close()
