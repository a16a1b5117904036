"""Real nats-server processes for tests: single nodes and 3-node JetStream clusters on free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cortex.bus.embedded import free_port, nats_server_binary


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    """Block until something listens on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port} after {timeout_s}s")


@dataclass
class NatsProcess:
    """One nats-server process with JetStream on a store directory."""

    store_dir: Path
    port: int = field(default_factory=free_port)
    name: str = "test"
    cluster_port: int | None = None
    routes: list[int] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Client URL."""
        return f"nats://127.0.0.1:{self.port}"

    def config(self) -> str:
        """The server's configuration file text."""
        text = (
            f'server_name: "{self.name}"\nlisten: "127.0.0.1:{self.port}"\n'
            f'jetstream {{ store_dir: "{self.store_dir}" }}\n'
        )
        if self.cluster_port:
            routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in self.routes)
            text += (
                f'cluster {{ name: "cortex-test"\n listen: "127.0.0.1:{self.cluster_port}"\n'
                f" routes: [{routes}] }}\n"
            )
        return text

    def start(self) -> "NatsProcess":
        """Start the process and wait until it accepts connections."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        conf = self.store_dir.parent / f"{self.name}.conf"
        conf.write_text(self.config())
        log = open(self.store_dir.parent / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        """Stop gracefully (SIGTERM) and wait."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """Kill -9, as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same port and store."""
        self.stop()
        self.start()


def start_cluster(base: Path, size: int = 3) -> list[NatsProcess]:
    """Start ``size`` JetStream nodes routed to each other."""
    cluster_ports = [free_port() for _ in range(size)]
    nodes = [
        NatsProcess(
            store_dir=base / f"n{i}" / "js", name=f"n{i}", cluster_port=cluster_ports[i],
            routes=[p for j, p in enumerate(cluster_ports) if j != i],
        )
        for i in range(size)
    ]
    for node in nodes:
        node.store_dir.mkdir(parents=True, exist_ok=True)
        node.start()
    return nodes
