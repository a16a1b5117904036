"""Fixtures for tool runtime tests: plain directories the sandbox user can use, process scans."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SANDBOX_TOOLS = HERE / "sandbox_tools"

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed (apt-get install bubblewrap)"
)


@pytest.fixture
def open_dir() -> Iterator[Callable[[], Path]]:
    """Make world-accessible directories (sandboxes run as other uids, so pytest's tmp_path won't do)."""
    made: list[Path] = []

    def make() -> Path:
        path = Path(tempfile.mkdtemp(prefix="cortex-tools-"))
        path.chmod(0o777)
        made.append(path)
        return path

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose command line contains ``marker`` (read from the host's /proc)."""
    needle = marker.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if needle in fh.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found
