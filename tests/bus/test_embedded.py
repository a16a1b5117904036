"""The embedded server and the CLI around it, run as real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cortex.bus.embedded import EmbeddedServer, free_port
from cortex.errors import ServerError

CORTEX = [sys.executable, "-m", "cortex.cli.main"]


def cortex(home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the cortex CLI with its own CORTEX_HOME."""
    full_env = {k: v for k, v in os.environ.items() if k != "CORTEX_NATS_URL"}
    full_env.update({"CORTEX_HOME": str(home), **(env or {})})
    return subprocess.run([*CORTEX, *args], env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def home(tmp_path: Path):
    """A CORTEX_HOME whose embedded server is stopped after the test."""
    path = tmp_path / "home"
    yield path
    cortex(path, "down")


def test_up_detach_status_tail_down(home: Path) -> None:
    port = free_port()
    up = cortex(home, "up", "--detach", "--server-only", "--port", str(port))
    assert up.returncode == 0, up.stderr
    assert f"nats://127.0.0.1:{port}" in up.stdout
    assert (home / "data" / "jetstream").is_dir() and (home / "logs" / "nats-server.log").exists()

    again = cortex(home, "up", "--detach", "--server-only", "--port", str(port))
    assert again.returncode == 0 and "using running" in again.stdout

    demo = cortex(home, "demo", "bus", "--events", "3")
    assert demo.returncode == 0, demo.stderr
    assert "deduplicated" in demo.stdout

    status = cortex(home, "status")
    assert status.returncode == 0, status.stderr
    assert "CORTEX_EVENTS" in status.stdout and "CORTEX_WORK" in status.stdout

    down = cortex(home, "down")
    assert "stopped" in down.stdout
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_tail_prints_events_live(home: Path) -> None:
    port = free_port()
    assert cortex(home, "up", "--detach", "--server-only", "--port", str(port)).returncode == 0
    env = {**os.environ, "CORTEX_HOME": str(home)}
    tail = subprocess.Popen([*CORTEX, "tail", "--all", "--json"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert cortex(home, "demo", "bus", "--events", "2").returncode == 0
        lines = [tail.stdout.readline() for _ in range(2)]
    finally:
        tail.terminate()
        tail.wait(10)
    assert all('"type":"bus.ping"' in line for line in lines)


def test_status_without_server_is_one_line_and_no_traceback(home: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    result = cortex(home, "status", env={"CORTEX_NATS_URL": url})
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert url in result.stderr and "cortex up" in result.stderr and "Traceback" not in result.stderr


def test_taken_port_is_a_clear_error(home: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = cortex(home, "up", "--detach", "--server-only", "--port", str(port))
    assert result.returncode == 1
    assert f"port {port} is taken" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; covered by the file-as-home test")
def test_unwritable_home_is_a_clear_error(tmp_path: Path) -> None:  # pragma: no cover - non-root only
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = cortex(locked / "home", "up", "--detach", "--port", str(free_port()))
    assert result.returncode == 1 and "CORTEX_HOME" in result.stderr


async def test_home_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ServerError, match="CORTEX_HOME"):
        await EmbeddedServer(not_a_dir).start(free_port())


def test_external_url_starts_no_server(home: Path, nats_server) -> None:
    result = cortex(home, "up", "--detach", "--server-only", env={"CORTEX_NATS_URL": nats_server.url})
    assert result.returncode == 0, result.stderr
    assert nats_server.url in result.stdout
    assert not (home / "server.json").exists()
