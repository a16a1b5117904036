"""The local deployment `cortex up` supervises: which processes, which exist, the manifests watch."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.settings import cortex_home
from cortex.errors import ConfigError, CortexError, ServerError
from cortex.supervisor import Notify, ProcessSpec, RestartPolicy, Supervisor, is_cortex_process, read_record

RECORD_FILE = "processes.json"


def cortex_argv(*words: str) -> tuple[str, ...]:
    """The command line of a ``cortex`` subcommand run with this Python."""
    return (sys.executable, "-m", "cortex.cli.main", *words)


def deployment_specs(api_host: str, api_port: int) -> list[ProcessSpec]:
    """Kernel, one worker per pool, the projections and the API, in start order."""
    words: list[tuple[str, tuple[str, ...]]] = [("kernel", ("kernel",))]
    words += [(f"worker-{pool}", ("worker", pool)) for pool in subjects.POOLS]
    words += [("projections", ("projections", "serve")), ("api", ("api", "--host", api_host, "--port", str(api_port)))]
    return [ProcessSpec(name, cortex_argv(*command)) for name, command in words]


def command_exists(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> bool:
    """True if ``cortex <words...>`` names registered (sub)commands (options are not checked)."""
    for word in words:
        if word.startswith("-"):
            return True
        choices = next(
            (a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None  # noqa: SLF001
        )
        if not choices or word not in choices:
            return False
        parser = choices[word]
    return True


def available(specs: list[ProcessSpec]) -> tuple[list[ProcessSpec], list[ProcessSpec]]:
    """Split ``specs`` into those whose cortex command exists in this install and those that do not."""
    from cortex.cli.main import build_parser

    parser = build_parser()
    present, missing = [], []
    for spec in specs:
        words = spec.argv[3:] if spec.argv[1:3] == ("-m", "cortex.cli.main") else ()
        (present if command_exists(parser, words) else missing).append(spec)
    return present, missing


def manifests_folder(given: str | None) -> Path:
    """``--manifests``, else ``./manifests`` if it exists, else ``CORTEX_HOME/manifests`` (created)."""
    if given:
        return Path(given).expanduser().resolve()
    local = Path("manifests")
    if local.is_dir():
        return local.resolve()
    folder = cortex_home() / "manifests"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {folder}: {exc.strerror or exc}; pass --manifests DIR") from None
    return folder


async def watch_manifests(url: str, folder: Path, stop: asyncio.Event, notify: Notify) -> None:
    """Apply ``folder`` now and after every change until ``stop`` (skipped if the watcher is not installed)."""
    if importlib.util.find_spec("cortex.manifests.watch") is None:
        notify("manifests: cortex.manifests.watch is not installed; not watching")
        return
    from cortex.manifests.watch import watch_and_apply

    policy, failures = RestartPolicy(), 0
    while not stop.is_set():
        bus = None
        try:
            bus = await Bus.connect(url, name="cortex-up-manifests")
            notify(f"manifests: watching {folder}")
            await watch_and_apply(bus, folder, stop)
        except (CortexError, OSError) as exc:
            failures += 1
            notify(f"manifests: watch failed ({exc}); retrying in {policy.delay(failures):.1f}s")
        finally:
            if bus is not None:
                await bus.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), policy.delay(failures))


async def supervise(url: str, api_host: str, api_port: int, manifests: Path, stop: asyncio.Event,
                    notify: Notify) -> None:
    """Run the deployment's processes (those that exist) and the manifests watch until ``stop``."""
    present, missing = available(deployment_specs(api_host, api_port))
    for spec in missing:
        notify(f"skipped {spec.name}: `cortex {' '.join(spec.argv[3:5])}` is not available in this install")
    notify("starting " + ", ".join(spec.name for spec in present))
    home = cortex_home()
    supervisor = Supervisor(
        present, home / "logs", env={**os.environ, "CORTEX_NATS_URL": url}, record=home / RECORD_FILE, notify=notify,
    )
    await asyncio.gather(supervisor.run(stop), watch_manifests(url, manifests, stop, notify))


def stop_signal() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def supervise_until_signal(url: str, api_host: str, api_port: int, manifests: str | None,
                                 notify: Notify) -> None:
    """Run the deployment in this process until SIGINT/SIGTERM (``manifests``: see ``manifests_folder``)."""
    await supervise(url, api_host, api_port, manifests_folder(manifests), stop_signal(), notify)


def log_line(message: str) -> None:
    """Print a supervisor message with a timestamp (the detached supervisor's log)."""
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


def running_supervisor() -> int | None:
    """The pid of the recorded supervisor if it still runs."""
    supervisor = (read_record(cortex_home() / RECORD_FILE) or {}).get("supervisor")
    return supervisor if is_cortex_process(supervisor) else None


async def start_detached(url: str, api_host: str, api_port: int, manifests: str | None,
                         timeout_s: float = 20.0) -> tuple[list[str], list[str]]:
    """Start the supervisor in the background, wait until it started every process; return (started, skipped)."""
    present, missing = available(deployment_specs(api_host, api_port))
    logs = cortex_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    argv = cortex_argv("up", "--supervise", "--api-host", api_host, "--api-port", str(api_port),
                       "--manifests", str(manifests_folder(manifests)))
    with open(logs / "supervisor.log", "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "CORTEX_NATS_URL": url}, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"the supervisor exited with code {proc.returncode}; see {logs / 'supervisor.log'}")
        record = read_record(cortex_home() / RECORD_FILE) or {}
        if record.get("supervisor") == proc.pid and len(record.get("children", {})) >= len(present):
            return [spec.name for spec in present], [spec.name for spec in missing]
        await asyncio.sleep(0.05)
    raise ServerError(f"the supervisor did not start every process within {timeout_s:.0f}s; see {logs}")
