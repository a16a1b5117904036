"""Validation of declared actions: denied with a machine-readable reason, failed for the model."""

from __future__ import annotations

import pytest

from tests.kernel.helpers import Run, agent, decisions, kinds, tool


@pytest.mark.parametrize(
    ("kind", "name", "reason"),
    [
        ("tool", "teleport", "unknown_tool"),
        ("agent", "stranger", "unknown_agent"),
        ("workflow", "nope", "unknown_workflow"),
        ("internal", "reboot", "unknown_internal"),
        ("spell", "x", "unknown_action_type"),
    ],
)
def test_unknown_targets_are_denied_then_failed(kind, name, reason):
    run = Run()
    run.start()
    out = run.declare("a", name, {}, type=kind)
    assert decisions(out) == [("action.denied", "a", reason), ("action.failed", "a", reason)]
    assert run.state.actions["a"].status == "failed"


def test_unknown_tool_detail_lists_the_available_tools():
    run = Run()
    run.start()
    out = run.declare("a", "teleport", {})
    assert "available: search, fetch" in out[0].data.detail


def test_an_unknown_mode_is_denied():
    run = Run()
    run.start()
    out = run.declare("a", mode="eventually")
    assert decisions(out)[0] == ("action.denied", "a", "invalid_mode")


def test_params_failing_the_tool_schema_are_denied_with_the_path():
    run = Run()
    run.start()
    out = run.declare("a", "search", {"q": "x", "limit": 0})
    assert decisions(out)[0] == ("action.denied", "a", "invalid_params")
    assert "params/limit" in out[0].data.detail


def test_missing_params_are_validated_as_an_empty_object():
    run = Run()
    run.start()
    out = run.declare("a", "search", None)
    assert decisions(out)[0][2] == "invalid_params"
    assert "'q' is a required property" in out[0].data.detail


def test_an_invalid_tool_schema_is_reported_as_such():
    run = Run(agent(tool("odd", {"type": "no-such-type"})))
    run.start()
    out = run.declare("a", "odd", {})
    assert decisions(out)[0][2] == "invalid_schema"


def test_valid_params_are_scheduled():
    run = Run()
    run.start()
    out = run.declare("a", "search", {"q": "nats", "limit": 3})
    assert kinds(out) == ["action.scheduled", "dispatch:tool", "timer.set"]


def test_agents_and_workflows_the_agent_lists_are_allowed():
    run = Run()
    run.start()
    out = run.declare("sub", "researcher", {"message": "dig"}, type="agent")
    out += run.declare("wf", "digest", {}, type="workflow")
    assert [k for k in kinds(out) if k.startswith("dispatch")] == [
        "dispatch:agent",
        "dispatch:workflow",
    ]


def test_reserved_id_is_denied_without_a_failure():
    run = Run()
    run.start()
    out = run.declare("vars")
    assert decisions(out) == [("action.denied", "vars", "reserved_id")]
    assert "vars" not in run.state.actions


def test_duplicate_live_id_is_denied_and_the_first_action_is_untouched():
    run = Run()
    run.start()
    run.declare("a")
    out = run.declare("a", "fetch", {})
    assert decisions(out) == [("action.denied", "a", "duplicate_id")]
    assert run.state.actions["a"].name == "search" and run.state.actions["a"].status == "scheduled"


def test_denied_duplicate_is_told_to_the_model_next_turn():
    run = Run()
    run.start()
    run.declare("a")
    run.declare("a")
    run.end_turn("<action/>")
    out = run.complete("a")
    assert 'action id "a" was refused' in out[0].data.messages[-1].content


def test_an_id_of_a_finished_earlier_action_can_be_reused():
    run = Run()
    run.start()
    run.declare("a")
    run.end_turn("<action/>")
    run.complete("a", "first")
    out = run.declare("a", "fetch", {})
    assert kinds(out)[0] == "action.scheduled"
    assert run.state.actions["a"].turn_id == "t2"


def test_validation_failures_reach_the_model_as_error_results():
    run = Run()
    run.start()
    run.declare("a", "teleport", {})
    out = run.end_turn("<action/>")
    user = out[0].data.messages[-1].content
    assert '<action_result id="a" status="error"' in user and "unknown_tool" in user


def test_declarations_for_a_turn_that_is_not_generating_are_ignored():
    run = Run()
    run.start()
    run.end_turn("")  # the nudge asks for t2
    assert run.declare("late", turn="t1") == []
    assert "late" not in run.state.actions
