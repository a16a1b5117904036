"""End to end with the scripted model: API -> kernel -> llm pool -> tool pool -> projections -> SSE."""

from __future__ import annotations

from tests.e2e.conftest import Deployment

ACTIONS = {"pause", "clock", "words", "letters", "ratio", "audit", "check"}


def index(events: list[dict], type_: str, action_id: str | None = None) -> int:
    """Position of the first event of ``type_`` (for ``action_id``) in the stream."""
    for i, event in enumerate(events):
        if event["type"] == type_ and (action_id is None or event["data"].get("action_id") == action_id):
            return i
    raise AssertionError(f"no {type_} {action_id or ''} in {[e['type'] for e in events]}")


async def test_dag_demo_runs_in_waves_while_the_model_streams(deployment: Deployment) -> None:
    run_id = await deployment.start_run("dag-demo", "Show me a multi-wave DAG.")
    events = await deployment.events_until_end(run_id, timeout=120)
    types = [e["type"] for e in events]
    assert types[0] == "run.requested" and types[-1] == "run.completed", types
    assert types.count("parse.error") == 0

    turn_done = index(events, "turn.completed")
    # the first action starts while its turn is still streaming
    assert index(events, "action.started", "clock") < turn_done
    assert index(events, "turn.chunk") < index(events, "action.declared", "clock")
    # every action ran to completion, fire_and_forget included
    completed = {e["data"]["action_id"] for e in events if e["type"] == "action.completed"}
    assert completed == ACTIONS
    # wave 2 waited for the pause (and the results it references) before it was scheduled
    waiting = events[index(events, "action.waiting", "ratio")]["data"]
    assert "pause" in waiting["waiting_on"]
    assert index(events, "action.scheduled", "ratio") > index(events, "action.completed", "pause")
    # the sync action paused the model: its result was injected and the turn continued
    output = events[turn_done]["data"]["output"]
    assert '<action_result id="check"' in output and output.rstrip().endswith("</response>")
    assert sum(1 for t in types if t == "turn.requested") == 1

    response = events[-1]["data"]["response"]
    assert "6*7=42" in response and "words=10" in response and "letters=9" in response
    assert "ratio=0.9" in response and "$" not in response

    progression = await deployment.get(
        f"/api/runs/{run_id}/progression",
        ready=lambda body: sum(1 for s in body.get("steps", []) if s.get("state") == "completed") == len(ACTIONS),
    )
    actions = {s["action_id"]: s for s in progression["steps"] if s["kind"] == "action"}
    assert set(actions) == ACTIONS
    assert set(actions["ratio"]["depends_on"]) == {"pause", "words", "letters"}  # explicit + references
    assert actions["check"]["mode"] == "sync" and actions["audit"]["mode"] == "fire_and_forget"
    run = await deployment.get(f"/api/runs/{run_id}", ready=lambda body: body.get("status") == "completed")
    assert run["response"] == response and run["agent"] == "dag-demo"
