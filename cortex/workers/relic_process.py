"""One relic process: spawn it in its own process group, probe its health, keep its last output, kill it.

The process gets a small environment (``PATH``, ``HOME``, locale, the manifest's ``env`` with
``${VAR}`` expanded from the worker's environment) plus ``PORT``; ``{port}`` and ``{python}``
in its arguments are replaced by the port and the worker's Python interpreter. On Linux it is
asked to receive SIGTERM when the worker dies, so a killed worker leaves no service behind.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable

import httpx

from cortex.errors import RelicError
from cortex.manifests.plugin import expand_vars
from cortex.manifests.relic import RelicSpec

_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
_PR_SET_PDEATHSIG = 1


def _death_signal() -> Callable[[], None] | None:
    """A pre-exec hook that makes the child receive SIGTERM when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        """Runs in the child between fork and exec."""
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook


_DIE_WITH_PARENT = _death_signal()


def relic_argv(spec: RelicSpec, port: int) -> list[str]:
    """The command with ``{port}`` and ``{python}`` filled in."""
    return [arg.replace("{port}", str(port)).replace("{python}", sys.executable) for arg in spec.command]


def relic_env(spec: RelicSpec, port: int) -> dict[str, str]:
    """The environment of the process (RelicError if a ``${VAR}`` has no value and no default)."""
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    try:
        env.update({name: expand_vars(value) for name, value in spec.env.items()})
    except ValueError as exc:
        raise RelicError("relic_start_failed", f"relic {spec.name}: env: {exc}") from None
    env["PORT"] = str(port)
    return env


class RelicProcess:
    """The OS process of one relic instance."""

    def __init__(self, spec: RelicSpec, port: int, *, tail_lines: int = 20) -> None:
        self.spec = spec
        self.port = port
        self.proc: asyncio.subprocess.Process | None = None
        self._output: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The process id (also its process group id), once spawned."""
        return self.proc.pid if self.proc else None

    @property
    def exited(self) -> bool:
        """True once the process has ended."""
        return self.proc is None or self.proc.returncode is not None

    def tail(self) -> str:
        """The last lines the process wrote (stdout and stderr together)."""
        return "\n".join(self._output)

    async def spawn(self) -> None:
        """Start the process (RelicError if it cannot be started)."""
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *relic_argv(self.spec, self.port),
                cwd=self.spec.cwd,
                env=relic_env(self.spec, self.port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_DIE_WITH_PARENT,
            )
        except OSError as exc:
            raise RelicError("relic_start_failed", f"relic {self.spec.name}: cannot start "
                             f"{self.spec.command[0]!r}: {exc.strerror or exc}") from None
        self._reader = asyncio.create_task(self._read_output())

    async def _read_output(self) -> None:
        """Keep the last lines of output (and never let the pipe fill up)."""
        assert self.proc is not None and self.proc.stdout is not None
        partial = b""
        while chunk := await self.proc.stdout.read(4096):
            *lines, partial = (partial + chunk).split(b"\n")
            self._output.extend(line.decode(errors="replace").rstrip() for line in lines)
            partial = partial[-4096:]
        if partial:
            self._output.append(partial.decode(errors="replace").rstrip())

    async def wait(self) -> int:
        """Wait for the process to end; its exit code (negative: killed by that signal)."""
        assert self.proc is not None
        return await self.proc.wait()

    async def probe(self, client: httpx.AsyncClient, host: str = "127.0.0.1") -> str | None:
        """One health check (of this port on ``host``): None if healthy, else what went wrong."""
        health = self.spec.health
        try:
            if health.type == "tcp":
                _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, self.port), health.timeout_s)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return None
            response = await client.get(f"http://{host}:{self.port}{health.path}", timeout=health.timeout_s)
        except (OSError, asyncio.TimeoutError, httpx.HTTPError) as exc:
            return f"{health.type} check failed: {type(exc).__name__}: {exc}".rstrip(": ")
        if response.status_code >= 400:
            return f"GET {health.path} answered {response.status_code}"
        return None

    async def wait_healthy(self, client: httpx.AsyncClient) -> None:
        """Poll the health check until it passes; RelicError if the process exits or time runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.health.start_timeout_s
        problem = "not checked yet"
        while True:
            if self.exited:
                await self._drained()
                raise RelicError("relic_start_failed", f"relic {self.spec.name} exited with code "
                                 f"{self.proc.returncode if self.proc else '?'} while starting; "
                                 f"last output:\n{self.tail()}")
            problem = await self.probe(client) or ""
            if not problem:
                return
            if loop.time() > deadline:
                raise RelicError("relic_start_failed", f"relic {self.spec.name} not healthy after "
                                 f"{self.spec.health.start_timeout_s:g}s ({problem}); last output:\n{self.tail()}")
            await asyncio.sleep(min(0.05, self.spec.health.interval_s))

    async def kill(self) -> None:
        """SIGTERM the process group, SIGKILL it after ``stop_timeout_s``, and reap it."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), self.spec.stop_timeout_s)
            except asyncio.TimeoutError:
                self._signal(signal.SIGKILL)
                await self.proc.wait()
        self._signal(signal.SIGKILL)  # stragglers the service left in its group
        await self._drained()

    def _signal(self, sig: signal.Signals) -> None:
        """Signal the whole process group (nothing if it is gone)."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    async def _drained(self) -> None:
        """Wait (briefly) for the output reader to see the end of the pipe."""
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._reader), 1.0)
            self._reader.cancel()
