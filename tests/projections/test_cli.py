"""The read-side commands as subprocesses against a real nats-server (CORTEX_NATS_URL)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import msgspec
import pytest

from cortex.bus import events as ev
from cortex.bus.client import Bus
from cortex.manifests.apply import apply_manifests
from cortex.projections.micro import subject
from tests.manifests.cli import CORTEX, cli_env, cortex
from tests.projections.events import Log, chatty_run, golden_events
from tests.support.nats import NatsProcess


def renamed(events: list[ev.Event], prefix: str, run_id: str) -> list[ev.Event]:
    """The same log under another run id, with every id prefixed (so the server does not dedupe it)."""
    return [
        msgspec.structs.replace(
            e, id=prefix + e.id, run_id=run_id, causation_id=prefix + e.causation_id if e.causation_id else None
        )
        for e in events
    ]


@pytest.fixture
async def env(nats_server: NatsProcess, bus: Bus, tmp_path: Path) -> dict[str, str]:
    """A server holding an applied agent, the golden run and a chatty run; the env for `cortex`."""
    (tmp_path / "writer.yaml").write_text("kind: agent\nname: writer\nprovider: scripted\nplugins: [text]\n")
    await apply_manifests(bus, tmp_path / "writer.yaml")
    await bus.publish_pipelined([*golden_events(), *chatty_run("r-chat")])
    return cli_env(nats_server.url, tmp_path / "home")


async def test_rebuild_then_list_and_show(env: dict[str, str], bus: Bus, run_id: str) -> None:
    code, out, err = await cortex(env, "projections", "rebuild", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["folded"] >= len(golden_events()) + len(chatty_run()) and "here" in result["where"]

    code, out, _ = await cortex(env, "runs", "list", "--json")
    assert code == 0 and [r["run_id"] for r in json.loads(out)] == ["r-chat", "golden"]
    code, out, _ = await cortex(env, "runs", "list", "--status", "completed", "--agent", "researcher")
    assert code == 0 and "golden" in out and "r-chat" not in out and "completed" in out

    code, out, _ = await cortex(env, "runs", "show", "r-chat")
    assert code == 0
    for expected in ("writer", "turn t1", "count tool text.count completed 8.0s, ran 12ms",
                     "check tool text.count failed",
                     "boom", "response: Streams persist.", "250 prompt + 50 completion"):
        assert expected in out, expected
    code, out, _ = await cortex(env, "runs", "show", "golden", "--json")
    shown = json.loads(out)
    assert shown["run"]["status"] == "completed" and shown["progression"]["steps"][0]["kind"] == "message"

    # a run the projector has not folded yet is folded from the log on the spot
    log = Log(run_id)
    log.requested("fresh")
    await bus.publish_pipelined(log.events)
    code, out, _ = await cortex(env, "runs", "show", run_id, "--json")
    assert code == 0 and json.loads(out)["run"]["status"] == "requested"
    code, _, err = await cortex(env, "runs", "show", "nobody")
    assert code == 1 and "no run 'nobody'" in err


async def test_agents_and_plugins_lists(env: dict[str, str], bus: Bus) -> None:
    code, out, _ = await cortex(env, "agents", "list", "--json")
    agents = {a["name"]: a for a in json.loads(out)}
    assert code == 0 and agents["writer"]["defined"] and agents["writer"]["total_runs"] == 0  # not folded yet
    await cortex(env, "projections", "rebuild")
    code, out, _ = await cortex(env, "agents", "list")
    assert code == 0 and "writer" in out and "researcher" in out and "(not applied)" in out
    code, out, _ = await cortex(env, "agents", "list", "--json")
    assert {a["name"]: a["total_runs"] for a in json.loads(out)} == {"researcher": 1, "writer": 1}
    code, out, _ = await cortex(env, "plugins", "list")
    assert code == 0 and "no plugins registered" in out


async def test_replay_checks_the_recorded_decisions(env: dict[str, str], bus: Bus) -> None:
    code, out, err = await cortex(env, "runs", "replay", "golden")
    assert code == 0, err
    assert "run.requested" in out.splitlines()[0]
    decisions = sum(1 for e in golden_events() if e.causation_id)
    assert f"{decisions} of {decisions} recorded decisions reproduced exactly" in out
    assert "final state: completed" in out

    code, out, _ = await cortex(env, "runs", "replay", "golden", "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == len(golden_events()) + 1 and all("type" in line and line.get("time") for line in lines[:-1])
    assert lines[-1]["type"] == "replay.report" and lines[-1]["ok"] and lines[-1]["status"] == "completed"

    copy = renamed(golden_events(), "x-", "tampered")
    index = next(i for i, e in enumerate(copy) if isinstance(e, ev.ActionScheduled))
    copy[index] = msgspec.structs.replace(copy[index], data=msgspec.structs.replace(copy[index].data, pool="elsewhere"))
    await bus.publish_pipelined(copy)
    code, out, _ = await cortex(env, "runs", "replay", "tampered")
    assert code == 1
    assert f"decided differently: {copy[index].id}" in out


async def test_serve_answers_queries_and_rebuilds_on_request(env: dict[str, str], bus: Bus, run_id: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *CORTEX, "projections", "serve", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async def answers() -> bool:
            try:
                reply = await bus.nc.request(subject("runs.get"), b'{"run_id": "golden"}', timeout=1)
            except Exception:  # noqa: BLE001 - not up yet
                return False
            return b"completed" in reply.data

        await until(answers, "the served projections")
        log = Log(run_id)
        log.requested()
        log.add(ev.RunStarted, ev.RunStartedData, agent="writer")
        await bus.publish_pipelined(log.events)

        async def folded() -> bool:
            reply = await bus.nc.request(subject("runs.get"), json.dumps({"run_id": run_id}).encode(), timeout=1)
            return b'"running"' in reply.data

        await until(folded, "the new run")
        code, out, err = await cortex(env, "projections", "rebuild", "--json")
        assert code == 0, err
        assert json.loads(out)["where"] == "by the running projector"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err_bytes = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err_bytes.decode()


async def until(condition, what: str, timeout_s: float = 20.0) -> None:
    """Poll an async condition until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
