"""The docker runtime: each call runs the plugin's image in a fresh, locked-down container.

Same permission model as the bubblewrap runtime, enforced by the engine: no network unless a
host is granted, read-only root with a tmpfs /tmp, only granted paths mounted (read-only or
read-write), memory, CPU share, CPU time and process limits, an unprivileged user, no
capabilities, no new privileges. Same protocol (``process_protocol``). The docker SDK is
blocking, so every engine call runs in a thread. Docker errors are mapped here, in
``_engine_errors``; with no engine answering, ``start`` raises ``DockerUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.types import Ulimit

from cortex.adapters.tools.base import CallContext, call_timeout, check_params, find_spec, short_name
from cortex.adapters.tools.process_protocol import decode_result, tool_environment
from cortex.errors import DockerUnavailable, SandboxError, ToolError, ToolTimeout
from cortex.manifests.plugin import PluginManifest
from cortex.specs import ToolSpec

SANDBOX_USER = "65534:65534"


def container_options(manifest: PluginManifest, tool: str, env: dict[str, str]) -> dict[str, Any]:
    """The ``containers.create`` arguments that enforce the manifest's permissions and limits."""
    grants = manifest.permissions.filesystem
    limits = manifest.limits
    volumes = {str(p): {"bind": str(p), "mode": "ro"} for p in grants.read}
    volumes.update({str(p): {"bind": str(p), "mode": "rw"} for p in grants.write})
    options: dict[str, Any] = {
        "image": manifest.image,
        "command": [*manifest.command, tool],
        "stdin_open": True,
        "network_mode": "bridge" if manifest.permissions.network_granted else "none",
        "read_only": True,
        "tmpfs": {"/tmp": "rw,nosuid,nodev,size=64m"},
        "volumes": volumes,
        "environment": env,
        "mem_limit": f"{limits.memory_mb}m",
        "memswap_limit": f"{limits.memory_mb}m",
        "pids_limit": limits.processes,
        "ulimits": [
            Ulimit(name="cpu", soft=limits.cpu_s, hard=limits.cpu_s + 1),
            Ulimit(name="core", soft=0, hard=0),
        ],
        "user": SANDBOX_USER,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "labels": {"cortex.plugin": manifest.name, "cortex.tool": tool},
    }
    if limits.cpus is not None:
        options["nano_cpus"] = int(limits.cpus * 1e9)
    return options


class DockerRuntime:
    """Runs a docker plugin's tools, one container per call."""

    def __init__(
        self, manifest: PluginManifest, *, client_factory: Callable[[], docker.DockerClient] = docker.from_env
    ) -> None:
        self.manifest = manifest
        self._client_factory = client_factory
        self._client: docker.DockerClient | None = None
        self._specs = [manifest.tool_spec(d) for d in manifest.tools]

    async def start(self) -> None:
        """Connect to the engine and make sure the image is present (pulling it if needed)."""
        self._client = await asyncio.to_thread(self._connect)
        await asyncio.to_thread(self._ensure_image, self._client)

    def tools(self) -> list[ToolSpec]:
        """The tools declared in the manifest, named ``<plugin>.<tool>``."""
        return list(self._specs)

    async def call(self, tool: str, params: dict[str, Any], ctx: CallContext) -> Any:
        """Run one tool in a new container and return its JSON result."""
        if self._client is None:
            raise SandboxError(f"plugin {self.manifest.name}: call start() before call()")
        spec = find_spec(self._specs, self.manifest, tool)
        check_params(spec, params)
        env = tool_environment(self.manifest, short_name(spec))
        options = container_options(self.manifest, short_name(spec), env)
        timeout = call_timeout(spec, ctx)
        stdin = json.dumps(params).encode()
        code, out, err = await asyncio.to_thread(self._run, self._client, options, stdin, timeout, spec.name)
        return decode_result(spec.name, code, out, err, self.manifest)

    async def close(self) -> None:
        """Close the connection to the engine."""
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
            self._client = None

    def _connect(self) -> docker.DockerClient:
        """A client whose engine answers a ping; DockerUnavailable otherwise."""
        try:
            client = self._client_factory()
            client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise DockerUnavailable(f"plugin {self.manifest.name}: no Docker engine answers: {exc}") from exc
        return client

    def _ensure_image(self, client: docker.DockerClient) -> None:
        """Pull the image unless the engine already has it."""
        with _engine_errors(f"plugin {self.manifest.name}: image {self.manifest.image}"):
            try:
                client.images.get(self.manifest.image)
            except docker.errors.ImageNotFound:
                client.images.pull(self.manifest.image)

    def _run(
        self, client: docker.DockerClient, options: dict[str, Any], stdin: bytes, timeout: float, name: str
    ) -> tuple[int, bytes, str]:
        """Create, feed, wait for and remove one container; kill it at the timeout."""
        with _engine_errors(name):
            container = client.containers.create(**options)
            try:
                sock = container.attach_socket(params={"stdin": 1, "stream": 1})
                container.start()
                raw = getattr(sock, "_sock", sock)
                raw.sendall(stdin)
                with contextlib.suppress(OSError):
                    raw.shutdown(socket.SHUT_WR)
                sock.close()
                try:
                    status = container.wait(timeout=timeout)
                except requests.exceptions.RequestException as exc:
                    container.kill()
                    raise ToolTimeout(f"{name} ran past its {timeout:g}s limit and was killed") from exc
                out = container.logs(stdout=True, stderr=False)
                err = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
                container.reload()
                if container.attrs.get("State", {}).get("OOMKilled"):
                    err += f"\n(killed by the engine: memory limit of {self.manifest.limits.memory_mb} MB)"
                return int(status.get("StatusCode", -1)), out, err
            finally:
                with contextlib.suppress(docker.errors.DockerException):
                    container.remove(force=True)


@contextlib.contextmanager
def _engine_errors(what: str) -> Iterator[None]:
    """Map docker SDK errors to the Cortex tree (the one place this adapter does so)."""
    try:
        yield
    except ToolError:
        raise
    except docker.errors.ImageNotFound as exc:
        raise SandboxError(f"{what}: image not found: {exc.explanation}") from exc
    except docker.errors.APIError as exc:
        raise SandboxError(f"{what}: the Docker engine refused: {exc.explanation or exc}") from exc
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise DockerUnavailable(f"{what}: lost the Docker engine: {exc}") from exc
