"""`cortex run` as a subprocess against a real nats-server, with a played kernel answering."""

from __future__ import annotations

import asyncio
import json
import signal

from tests.api.played_kernel import PlayedKernel
from tests.api.real_processes import real_kernel  # noqa: F401 - a fixture
from tests.cli.conftest import CORTEX, cortex


async def test_json_prints_every_event_with_type_and_time_and_exits_0(cli_env, kernel: PlayedKernel) -> None:
    code, out, err = await cortex(cli_env, "run", "echo", "hello there", "--json")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert all("type" in e and "time" in e for e in events)
    types = [e["type"] for e in events]
    assert types[0] == "run.requested" and types[-1] == "run.completed"
    assert "action.completed" in types and "response.delta" in types
    assert events[-1]["data"]["response"] == "You said: hello there"
    assert len({e["run_id"] for e in events}) == 1


async def test_live_view_shows_actions_answer_and_usage(cli_env, kernel: PlayedKernel) -> None:
    code, out, err = await cortex(cli_env, "run", "echo", "hello")
    assert code == 0, err
    assert "You said: hello" in out
    assert "now" in out and "clock.now" in out and "done" in out
    assert "Let me check the time." in out
    assert "usage: 11 prompt + 7 completion tokens" in out


async def test_failed_run_exits_1(cli_env, kernel: PlayedKernel) -> None:
    code, out, _ = await cortex(cli_env, "run", "echo", "please fail", "--json")
    assert code == 1
    assert json.loads(out.splitlines()[-1])["type"] == "run.failed"


async def test_unknown_agent_is_a_usage_error(cli_env, kernel: PlayedKernel) -> None:
    code, out, err = await cortex(cli_env, "run", "nobody", "hi")
    assert code == 2
    assert "nobody" in err and "cortex apply" in err and "Traceback" not in err


async def test_bad_variable_is_a_usage_error(cli_env, kernel: PlayedKernel) -> None:
    code, _, err = await cortex(cli_env, "run", "echo", "hi", "--var", "novalue")
    assert code == 2 and "NAME=VALUE" in err


async def test_timeout_cancels_the_run_and_exits_1(cli_env, kernel: PlayedKernel) -> None:
    code, out, err = await cortex(cli_env, "run", "echo", "hang on", "--json", "--timeout", "1")
    assert code == 1
    types = [json.loads(line)["type"] for line in out.splitlines()]
    assert types[-2:] == ["cancel.requested", "run.cancelled"]
    assert "timed out" in err


async def test_ctrl_c_cancels_the_run_and_exits_130(cli_env, kernel: PlayedKernel) -> None:
    proc = await asyncio.create_subprocess_exec(
        *CORTEX, "run", "echo", "hang please", "--json", env=cli_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    lines = []
    while not any('"run.started"' in line for line in lines):
        lines.append((await asyncio.wait_for(proc.stdout.readline(), 20)).decode())
        assert lines[-1], "cortex run ended before the run started"
    proc.send_signal(signal.SIGINT)
    rest, _ = await asyncio.wait_for(proc.communicate(), 20)
    types = [json.loads(line)["type"] for line in (lines + rest.decode().splitlines()) if line.strip()]
    assert proc.returncode == 130
    assert types[-2:] == ["cancel.requested", "run.cancelled"]


async def test_run_with_the_real_kernel_and_llm_worker(cli_env, real_kernel: None) -> None:
    code, out, err = await cortex(cli_env, "run", "calc", "set it", "--json", timeout=60)
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    types = [e["type"] for e in events]
    assert types[0] == "run.requested" and types[-1] == "run.completed"
    assert {"run.started", "turn.requested", "thought.delta", "action.declared", "action.completed",
            "response.delta", "turn.completed"} <= set(types)
    assert events[-1]["data"]["response"] == "The value is 42."
