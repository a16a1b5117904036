"""The subprocess runtime: each call runs the plugin's command in a fresh bubblewrap sandbox.

The sandbox has its own user, pid, ipc, uts and (unless a host is granted) network namespace;
it sees /usr, /etc and the plugin's directory read-only, the granted paths, a private /tmp,
and nothing else. rlimits bound address space, CPU time and processes; a wall-clock timeout
kills the whole process tree.

RLIMIT_NPROC is not enforced for root and is counted per uid, so when Cortex runs as root
each concurrent sandbox gets its own unprivileged uid from a pool (``SANDBOX_UID_BASE`` up)
and the shared group ``nogroup`` (65534): grants must be readable (and, for write grants,
writable) by that group or by everyone. When Cortex does not run as root, sandboxes run as
its own user and the process limit counts all of that user's processes.

The tool speaks the protocol in ``process_protocol`` (JSON on stdin, JSON on stdout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from collections.abc import Iterator
from typing import Any

from cortex.adapters.tools.base import CallContext, call_timeout, check_params, find_spec, short_name
from cortex.adapters.tools.process_protocol import STDERR_TAIL, decode_result, parse_progress, tool_environment
from cortex.errors import SandboxError, ToolError, ToolTimeout
from cortex.manifests.plugin import PluginManifest
from cortex.specs import ToolSpec

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SANDBOX_UID_BASE = 2_000_000_000
SANDBOX_GID = 65534
UIDS_PER_PROCESS = 256
KILL_GRACE_S = 5.0


class UidPool:
    """Distinct unprivileged uids for concurrent sandboxes, so each has its own process count."""

    def __init__(self, first: int, size: int) -> None:
        self._first, self._size = first, size
        self._used: set[int] = set()
        self._next = 0

    @contextlib.contextmanager
    def lease(self) -> Iterator[int]:
        """Hold a uid no other sandbox of this process is using, for the length of one call.

        Uids are handed out round-robin, so a uid is not reused right after its sandbox ended.
        """
        for step in range(self._size):
            uid = self._first + (self._next + step) % self._size
            if uid not in self._used:
                self._next = (self._next + step + 1) % self._size
                break
        else:
            raise SandboxError(f"more than {self._size} concurrent sandboxes in one process")
        self._used.add(uid)
        try:
            yield uid
        finally:
            self._used.discard(uid)


UID_POOL = UidPool(SANDBOX_UID_BASE + (os.getpid() % 4096) * UIDS_PER_PROCESS, UIDS_PER_PROCESS)


class BwrapRuntime:
    """Runs a subprocess plugin's tools under bubblewrap with the manifest's permissions and limits."""

    def __init__(
        self,
        manifest: PluginManifest,
        *,
        uid_pool: UidPool = UID_POOL,
        sandbox_gid: int = SANDBOX_GID,
        max_output_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.manifest = manifest
        self.uid_pool = uid_pool
        self.sandbox_gid = sandbox_gid
        self.max_output_bytes = max_output_bytes
        self._specs = [manifest.tool_spec(d) for d in manifest.tools]
        self._bwrap = ""
        self._prlimit = ""
        self._disable_userns = False

    async def start(self) -> None:
        """Find bwrap and prlimit and prove a sandbox can be built here; SandboxError if not."""
        bwrap, prlimit = shutil.which("bwrap"), shutil.which("prlimit")
        if not bwrap or not prlimit:
            raise SandboxError(
                "the subprocess runtime needs bubblewrap and prlimit: apt-get install bubblewrap util-linux"
            )
        self._bwrap, self._prlimit = bwrap, prlimit
        probe = await asyncio.create_subprocess_exec(
            bwrap, "--help", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        self._disable_userns = b"--disable-userns" in (await probe.communicate())[0]
        code, _, err = await self._run(self.argv(None, command=("true",)), self.environment(None), b"", 10.0)
        if code != 0:
            raise SandboxError(f"plugin {self.manifest.name}: bubblewrap cannot build the sandbox: {err.strip()}")

    def tools(self) -> list[ToolSpec]:
        """The tools declared in the manifest, named ``<plugin>.<tool>``."""
        return list(self._specs)

    async def call(self, tool: str, params: dict[str, Any], ctx: CallContext) -> Any:
        """Run the command for one tool in a fresh sandbox and return its JSON result."""
        if not self._bwrap:
            raise SandboxError(f"plugin {self.manifest.name}: call start() before call()")
        spec = find_spec(self._specs, self.manifest, tool)
        check_params(spec, params)
        timeout = call_timeout(spec, ctx)
        stdin = json.dumps(params).encode()
        tool_name = short_name(spec)
        argv, env = self.argv(tool_name), self.environment(tool_name)
        code, out, err = await self._run(argv, env, stdin, timeout, ctx, spec.name)
        return decode_result(spec.name, code, out, err, self.manifest)

    async def close(self) -> None:
        """Nothing stays running between calls."""

    def argv(self, tool: str | None, *, command: tuple[str, ...] | None = None) -> list[str]:
        """The full command line: prlimit (rlimits), then bwrap (namespaces, mounts), then the tool."""
        m = self.manifest
        limits = m.limits
        argv = [
            self._prlimit or "prlimit",
            f"--as={limits.memory_mb * 1024 * 1024}",
            f"--cpu={limits.cpu_s}:{limits.cpu_s + 1}",
            f"--nproc={limits.processes}",
            "--core=0",
            "--",
            self._bwrap or "bwrap",
            "--unshare-all",
            "--unshare-user",
        ]
        if self._disable_userns:
            argv.append("--disable-userns")
        if m.permissions.network_granted:
            argv.append("--share-net")
        argv += ["--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
        for path in SYSTEM_DIRS:
            if os.path.islink(path):
                argv += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                argv += ["--ro-bind", path, path]
        argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        directory = str(m.directory)
        argv += ["--ro-bind", directory, directory]
        for grant in m.permissions.filesystem.read:
            argv += ["--ro-bind", str(grant), str(grant)]
        for grant in m.permissions.filesystem.write:
            argv += ["--bind", str(grant), str(grant)]
        argv += ["--chdir", directory, "--"]
        program = command or m.command
        first = program[0]
        if "/" in first and not os.path.isabs(first):
            first = str(m.directory / first)
        argv += [first, *program[1:]]
        if tool is not None:
            argv.append(tool)
        return argv

    def environment(self, tool: str | None) -> dict[str, str]:
        """The sandbox's whole environment: a fixed base plus the protocol's variables."""
        base = {"PATH": SANDBOX_PATH, "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        return base | tool_environment(self.manifest, tool)

    async def _run(
        self,
        argv: list[str],
        env: dict[str, str],
        stdin: bytes,
        timeout: float,
        ctx: CallContext | None = None,
        name: str = "sandbox",
    ) -> tuple[int, bytes, str]:
        """Run ``argv`` as a leased uid (as root) in its own session; kill the whole group at the end."""
        with self.uid_pool.lease() if os.geteuid() == 0 else contextlib.nullcontext() as uid:
            return await self._spawn_and_wait(argv, env, stdin, timeout, ctx, name, uid)

    async def _spawn_and_wait(
        self,
        argv: list[str],
        env: dict[str, str],
        stdin: bytes,
        timeout: float,
        ctx: CallContext | None,
        name: str,
        uid: int | None,
    ) -> tuple[int, bytes, str]:
        """Spawn, feed stdin, collect stdout and stderr, enforce the wall-clock limit."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,
                user=uid,
                group=self.sandbox_gid if uid is not None else None,
                extra_groups=[] if uid is not None else None,
            )
        except OSError as exc:
            raise SandboxError(f"cannot start the sandbox for {name}: {exc}") from exc
        tail = _Tail()
        reader = asyncio.ensure_future(_read_capped(proc.stdout, self.max_output_bytes, name))  # type: ignore[arg-type]
        io = [
            reader,
            asyncio.ensure_future(_read_stderr(proc.stderr, tail, ctx)),  # type: ignore[arg-type]
            asyncio.ensure_future(_feed(proc.stdin, stdin)),  # type: ignore[arg-type]
        ]
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*io)
                code = await proc.wait()
                out = reader.result()
        except TimeoutError as exc:
            raise ToolTimeout(f"{name} ran past its {timeout:g}s limit and was killed") from exc
        finally:
            for task in io:
                task.cancel()
            if proc.returncode is None:
                await _kill_sandbox(proc)
        return code, out, tail.text()


class _Tail:
    """The last few thousand characters written on stderr (progress lines excluded)."""

    def __init__(self) -> None:
        self._text = ""

    def add(self, line: str) -> None:
        """Append a line, keeping only the tail."""
        self._text = (self._text + line)[-STDERR_TAIL:]

    def text(self) -> str:
        """The kept tail."""
        return self._text


async def _feed(stream: asyncio.StreamWriter, data: bytes) -> None:
    """Write the params and close stdin; a tool that does not read them is not an error."""
    try:
        stream.write(data)
        await stream.drain()
        stream.close()
    except (BrokenPipeError, ConnectionResetError):
        pass


async def _read_capped(stream: asyncio.StreamReader, limit: int, name: str) -> bytes:
    """Read stdout to its end; ToolError if the tool writes more than ``limit`` bytes."""
    buf = bytearray()
    while chunk := await stream.read(65536):
        buf += chunk
        if len(buf) > limit:
            raise ToolError(f"{name} wrote more than {limit} bytes on stdout")
    return bytes(buf)


async def _read_stderr(stream: asyncio.StreamReader, tail: _Tail, ctx: CallContext | None) -> None:
    """Keep stderr's tail and forward ``@progress`` lines to the call's progress callback."""
    pending = b""
    while chunk := await stream.read(65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if len(pending) > STDERR_TAIL:
            lines.append(pending)
            pending = b""
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            progress = parse_progress(line) if ctx is not None else None
            if progress is not None and ctx is not None:
                await ctx.progress(progress[1], progress[0])
            else:
                tail.add(line + "\n")
    tail.add(pending.decode("utf-8", "replace"))


async def _kill_sandbox(proc: asyncio.subprocess.Process) -> None:
    """Kill everything in the sandbox, leaving no process (and no zombie) behind.

    SIGKILL to the sandbox's pid-namespace init (bwrap's child) makes the kernel kill every
    process inside and the dying init reap them; bwrap then reaps the init and exits, and we
    reap bwrap. Only if that does not happen promptly is bwrap's whole group killed.
    """
    inits = _children(proc.pid)
    for pid in inits:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if inits:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), KILL_GRACE_S)
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            # pid (comm) state ppid ...; comm may contain spaces and parentheses
            fields = stat[stat.rfind(b")") + 2 :].split()
            if len(fields) > 1 and int(fields[1]) == pid:
                found.append(int(entry))
    return found
