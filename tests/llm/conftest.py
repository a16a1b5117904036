"""Fixtures for LLM provider tests: the local GGUF model and a real llama_cpp.server on it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cortex.adapters.llm.local_model import default_model_path
from cortex.bus.embedded import free_port

SERVER_START_S = 120.0
"""How long llama_cpp.server may take to load the model and answer."""


@pytest.fixture(scope="session")
def local_model_path() -> Path:
    """Path of the default local model (Gemma 3 270M GGUF), assembled on first use."""
    return default_model_path()


@pytest.fixture(scope="session")
def llama_server(local_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``python -m llama_cpp.server`` on the local model; yields its ``/v1`` base URL.

    The GGUF carries no chat template, so the server is told ``--chat_format gemma``.
    """
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama_server") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(local_model_path),
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "4096", "--n_threads", "2", "--chat_format", "gemma",
    ]  # fmt: skip
    base_url = f"http://127.0.0.1:{port}/v1"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_serving(proc, base_url, log_path)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_serving(proc: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    """Poll ``/v1/models`` until it answers 200; fail with the server's log if it never does."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{_tail(log_path)}")
        try:
            if httpx.get(f"{base_url}/models", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"llama_cpp.server did not answer within {SERVER_START_S}s:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
