"""End to end with the real local model (Gemma 3 270M, grammar-constrained) and real tools."""

from __future__ import annotations

from tests.e2e.conftest import Deployment

TERMINAL = {"action.completed", "action.failed", "action.cancelled", "action.denied"}


async def test_a_run_on_the_local_model_with_real_tools(deployment: Deployment) -> None:
    run_id = await deployment.start_run("local-e2e", "Which paper about agents is cited most?")
    events = await deployment.events_until_end(run_id, timeout=600)
    types = [e["type"] for e in events]
    turns = [e["data"] for e in events if e["type"] == "turn.completed"]
    assert types[-1] == "run.completed", (
        [(e["type"], e["data"]) for e in events if "failed" in e["type"]],
        [(t["stop_reason"], t["output"]) for t in turns],
    )
    # grammar-constrained output parses cleanly, and every action it declared got an outcome
    assert "parse.error" not in types
    declared = {e["data"]["action_id"] for e in events if e["type"] == "action.declared"}
    settled = {e["data"]["action_id"] for e in events if e["type"] in TERMINAL}
    assert declared <= settled
    assert turns and all(t["usage"]["completion_tokens"] > 0 for t in turns)
    assert events[-1]["data"]["response"].strip()

    run = await deployment.get(f"/api/runs/{run_id}", ready=lambda body: body.get("status") == "completed")
    assert run["agent"] == "local-e2e"
    assert run["usage"]["completion_tokens"] >= sum(t["usage"]["completion_tokens"] for t in turns)
