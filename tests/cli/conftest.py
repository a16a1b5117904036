"""Fixtures for CLI tests: an applied agent, a played kernel, and running `cortex` as a subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.api.played_kernel import kernel  # noqa: F401 - a fixture
from tests.support.nats import NatsProcess

CORTEX = (sys.executable, "-m", "cortex.cli.main")


@pytest.fixture
def cli_env(nats_server: NatsProcess, tmp_path: Path) -> dict[str, str]:
    """Environment for a `cortex` subprocess pointed at the test server."""
    return {**os.environ, "CORTEX_NATS_URL": nats_server.url, "CORTEX_HOME": str(tmp_path / "home"),
            "COLUMNS": "120", "TERM": "dumb"}


async def cortex(env: dict[str, str], *args: str, stdin: bytes | None = None,
                 timeout: float = 30) -> tuple[int, str, str]:
    """Run `cortex ARGS...`; return (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *CORTEX, *args, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    return proc.returncode, out.decode(), err.decode()
