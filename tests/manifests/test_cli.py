"""``cortex validate`` and ``cortex apply`` as subprocesses against a real nats-server."""

from __future__ import annotations

import json
from pathlib import Path

from cortex.bus.client import Bus
from cortex.manifests.store import ManifestStore
from tests.manifests.cli import cli_env, cortex
from tests.manifests.conftest import Write
from tests.support.nats import NatsProcess

AGENT = "kind: agent\nname: helper\nprovider: scripted\ntools: [calc.eval]\n"


async def test_validate_reports_each_manifest_and_exits_1_on_errors(write: Write, tmp_path: Path) -> None:
    env = cli_env("nats://127.0.0.1:1", tmp_path / "home")  # validate needs no server
    write("m/helper.yaml", AGENT)
    write("m/shared.yaml", "tools: [text.count]\n")
    code, out, err = await cortex(env, "validate", str(tmp_path / "m"))
    assert code == 0, err
    assert "✓ agent helper" in out and "fragment" in out

    write("m/bad.yaml", "kind: agent\nname: bad\nlimits:\n  max_tokens: 0\n")
    code, out, _ = await cortex(env, "validate", str(tmp_path / "m"))
    assert code == 1
    assert "✓ agent helper" in out
    assert "bad.yaml:4: limits.max_tokens: Input should be greater than or equal to 1" in out

    code, out, _ = await cortex(env, "validate", "--json", str(tmp_path / "m" / "bad.yaml"))
    [result] = json.loads(out)
    assert code == 1 and not result["ok"] and "limits.max_tokens" in result["errors"][0]


async def test_apply_stores_and_prints_what_changed(nats_server: NatsProcess, bus: Bus, write: Write, tmp_path: Path) -> None:
    env = cli_env(nats_server.url, tmp_path / "home")
    path = write("helper.yaml", AGENT)
    code, out, err = await cortex(env, "apply", str(path))
    assert code == 0, err
    assert "helper" in out and "created" in out
    assert [t.name for t in (await ManifestStore(bus).get_agent("helper")).tools] == ["calc.eval"]

    code, out, _ = await cortex(env, "apply", "--json", str(path))
    assert code == 0 and [r["change"] for r in json.loads(out)] == ["unchanged"]

    write("helper.yaml", AGENT.replace("calc.eval", "nothing.here"))
    code, out, err = await cortex(env, "apply", str(path))
    assert code == 1
    assert "helper.yaml:4: tools.0: nothing.here match no tool" in err
