"""The supervisor restarts crashed children with backoff and stops them all; tiny fake children as data."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

from cortex.cli.deployment import available, command_exists, deployment_specs
from cortex.cli.main import build_parser
from cortex.supervisor import ProcessSpec, RestartPolicy, Supervisor, read_record

FAST = RestartPolicy(initial_s=0.05, factor=2.0, max_s=0.2, stable_after_s=60.0, stop_grace_s=5.0)


async def until(condition, timeout: float = 15.0) -> None:
    """Poll ``condition`` until it is true (fail after ``timeout``)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return True


def sleeper(name: str, pid_file: Path) -> ProcessSpec:
    """A child that writes its pid, then sleeps."""
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); print('up', flush=True); time.sleep(600)"
    return ProcessSpec(name, (sys.executable, "-c", code))


def test_backoff_grows_to_its_ceiling_and_a_stable_run_starts_over() -> None:
    policy = RestartPolicy(initial_s=0.5, factor=2.0, max_s=3.0, stable_after_s=30.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.failures_after(4, ran_s=1.0) == 5
    assert policy.failures_after(4, ran_s=31.0) == 1


async def test_a_killed_child_is_restarted_and_stop_ends_every_child(tmp_path: Path) -> None:
    pid_file, record = tmp_path / "pid", tmp_path / "processes.json"
    messages: list[str] = []
    supervisor = Supervisor([sleeper("sleepy", pid_file)], tmp_path / "logs", policy=FAST, record=record,
                            notify=messages.append)
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))
    try:
        await until(lambda: pid_file.exists() and pid_file.read_text())
        first = int(pid_file.read_text())
        assert read_record(record) == {"supervisor": os.getpid(), "children": {"sleepy": first}}
        os.kill(first, signal.SIGKILL)
        await until(lambda: pid_file.read_text() and int(pid_file.read_text()) != first)
        second = int(pid_file.read_text())
        await until(lambda: (read_record(record) or {}).get("children") == {"sleepy": second})
        assert supervisor.children["sleepy"].starts == 2
        assert supervisor.children["sleepy"].last_exit == -signal.SIGKILL
        assert any("sleepy exited with code -9" in m for m in messages)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert not alive(second)
    assert not record.exists()
    log = (tmp_path / "logs" / "sleepy.log").read_text()
    assert log.count("starting ") == 2 and log.count("up") >= 2


async def test_a_crash_looping_child_keeps_being_restarted_with_backoff(tmp_path: Path) -> None:
    crash = ProcessSpec("crashy", (sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"))
    messages: list[str] = []
    supervisor = Supervisor([crash], tmp_path / "logs", policy=FAST, notify=messages.append)
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))
    try:
        await until(lambda: supervisor.children["crashy"].starts >= 4)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    delays = [float(m.rsplit("in ", 1)[1].rstrip("s")) for m in messages if "restarting" in m]
    assert delays[:3] == [0.05, 0.1, 0.2] and max(delays) == 0.2
    assert supervisor.children["crashy"].last_exit == 3
    assert (tmp_path / "logs" / "crashy.log").read_text().count("boom") >= 4


async def test_a_child_that_cannot_start_is_retried(tmp_path: Path) -> None:
    missing = ProcessSpec("missing", (str(tmp_path / "no-such-program"),))
    messages: list[str] = []
    supervisor = Supervisor([missing], tmp_path / "logs", policy=FAST, notify=messages.append)
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))
    try:
        await until(lambda: sum("cannot start" in m for m in messages) >= 2)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def test_only_commands_that_exist_are_started() -> None:
    parser = build_parser()
    assert command_exists(parser, ("kernel",))
    assert command_exists(parser, ("api", "--host", "127.0.0.1"))
    assert not command_exists(parser, ("worker", "no-such-pool"))
    assert not command_exists(parser, ("no-such-command",))
    specs = deployment_specs("127.0.0.1", 9999)
    assert [s.name for s in specs][:2] == ["kernel", "worker-llm"] and specs[-1].argv[-4:] == (
        "--host", "127.0.0.1", "--port", "9999")
    present, missing = available([*specs, ProcessSpec("ghost", (sys.executable, "-m", "cortex.cli.main", "ghost"))])
    assert {"kernel", "api"} <= {s.name for s in present}
    assert "ghost" in {s.name for s in missing}


@pytest.mark.parametrize("words", [("worker", "llm"), ("run",), ("chat",)])
def test_registered_commands_are_found(words: tuple[str, ...]) -> None:
    assert command_exists(build_parser(), words)
