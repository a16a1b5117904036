"""Keep child processes running: start each, restart it with backoff when it exits, stop them all on request.

The processes are data (``ProcessSpec``), so the same supervisor runs the local deployment of
`cortex up` and tiny fake children in tests. Each child's output goes to ``<log_dir>/<name>.log``;
the pids are recorded in a JSON file so that another process (`cortex down`) can stop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("cortex.supervisor")


@dataclass(frozen=True)
class ProcessSpec:
    """A child process to keep running: its name (also its log file's) and its command line."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential backoff between restarts; a child that ran ``stable_after_s`` starts the count again."""

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    stable_after_s: float = 30.0
    stop_grace_s: float = 10.0

    def delay(self, failures: int) -> float:
        """Seconds to wait before the restart after ``failures`` quick exits in a row (1, 2, ...)."""
        return min(self.initial_s * self.factor ** max(failures - 1, 0), self.max_s)

    def failures_after(self, failures: int, ran_s: float) -> int:
        """The new count of quick exits after a child ran ``ran_s`` seconds."""
        return 1 if ran_s >= self.stable_after_s else failures + 1


@dataclass
class ChildState:
    """What the supervisor knows about one child."""

    spec: ProcessSpec
    pid: int | None = None
    starts: int = 0
    last_exit: int | None = None


Notify = Callable[[str], None]


class Supervisor:
    """Run ``specs`` as children until ``stop`` is set; restart any that exits meanwhile."""

    def __init__(
        self, specs: list[ProcessSpec], log_dir: Path, *, policy: RestartPolicy | None = None,
        env: dict[str, str] | None = None, record: Path | None = None, notify: Notify | None = None,
    ) -> None:
        self.children = {spec.name: ChildState(spec) for spec in specs}
        self.log_dir = log_dir
        self.policy = policy or RestartPolicy()
        self.env = env if env is not None else dict(os.environ)
        self.record = record
        self.notify = notify or (lambda message: log.warning("%s", message))

    async def run(self, stop: asyncio.Event) -> None:
        """Supervise every child until ``stop`` is set, then stop them (SIGTERM, then SIGKILL after the grace)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            await asyncio.gather(*(self._keep(child, stop) for child in self.children.values()))
        finally:
            if self.record is not None:
                self.record.unlink(missing_ok=True)

    async def _start(self, child: ChildState) -> asyncio.subprocess.Process:
        path = self.log_dir / f"{child.spec.name}.log"
        with open(path, "ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {' '.join(child.spec.argv)}\n".encode())
            out.flush()
            proc = await asyncio.create_subprocess_exec(
                *child.spec.argv, stdout=out, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
                env={**self.env, **child.spec.env}, start_new_session=True,
            )
        child.pid, child.starts = proc.pid, child.starts + 1
        self.write_record()
        return proc

    async def _keep(self, child: ChildState, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not stop.is_set():
            try:
                proc = await self._start(child)
            except OSError as exc:
                self.notify(f"{child.spec.name}: cannot start: {exc}")
                code, ran_s = None, 0.0
            else:
                started = loop.time()
                if await _wait_or_stop(proc, stop):
                    await terminate(proc, self.policy.stop_grace_s)
                    return
                code, ran_s = proc.returncode, loop.time() - started
            child.last_exit = code
            failures = self.policy.failures_after(failures, ran_s)
            delay = self.policy.delay(failures)
            self.notify(f"{child.spec.name} exited with code {code} after {ran_s:.1f}s; restarting in {delay:g}s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    def write_record(self) -> None:
        """Write the supervisor's pid and the children's pids to the record file (atomically)."""
        if self.record is None:
            return
        data = {"supervisor": os.getpid(), "children": {n: c.pid for n, c in self.children.items() if c.pid}}
        tmp = self.record.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.record)


async def _wait_or_stop(proc: asyncio.subprocess.Process, stop: asyncio.Event) -> bool:
    """Wait for the child to exit or for ``stop``; True if ``stop`` came first."""
    exited = asyncio.ensure_future(proc.wait())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    return exited not in done


async def terminate(proc: asyncio.subprocess.Process, grace_s: float) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace_s``."""
    if proc.returncode is not None:
        return
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except asyncio.TimeoutError:
        _signal_group(proc.pid, signal.SIGKILL)
        await proc.wait()


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# ---- the record, for `cortex down` -----------------------------------------------


def read_record(path: Path) -> dict | None:
    """The recorded pids (``{"supervisor": pid, "children": {name: pid}}``), None if there is no record."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_cortex_process(pid: int) -> bool:
    """True if ``pid`` runs and its command line mentions cortex (guards against a reused pid)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True  # no /proc: trust the record
    return b"cortex" in cmdline


async def stop_pid(pid: int, grace_s: float = 10.0) -> bool:
    """SIGTERM ``pid``, SIGKILL it after ``grace_s``; True if it was running."""
    if not is_cortex_process(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while is_cortex_process(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        await asyncio.sleep(0.05)
    if is_cortex_process(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


async def stop_recorded(path: Path, grace_s: float = 15.0) -> list[str]:
    """Stop the recorded supervisor (it stops its children), then any child left; return the names stopped."""
    record = read_record(path)
    if record is None:
        return []
    children = {name: pid for name, pid in (record.get("children") or {}).items() if is_cortex_process(pid)}
    supervisor = record.get("supervisor")
    stopped = [f"supervisor ({supervisor})"] if supervisor != os.getpid() and await stop_pid(supervisor, grace_s) else []
    for pid in children.values():
        await stop_pid(pid, grace_s)  # normally gone already: the supervisor stops its children
    path.unlink(missing_ok=True)
    return stopped + list(children)
