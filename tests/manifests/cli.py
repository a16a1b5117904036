"""Run the ``cortex`` command as a subprocess pointed at a test nats-server."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

CORTEX = (sys.executable, "-m", "cortex.cli.main")


def cli_env(nats_url: str, home: Path) -> dict[str, str]:
    """Environment for a ``cortex`` subprocess: the test server, a private CORTEX_HOME, a wide plain terminal."""
    return {**os.environ, "CORTEX_NATS_URL": nats_url, "CORTEX_HOME": str(home), "COLUMNS": "160", "TERM": "dumb"}


async def cortex(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run ``cortex ARGS...``; return (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *CORTEX, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()
