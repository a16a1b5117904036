"""Failures (fail-fast or continue) and cancellation of a run, a turn or an action."""

from __future__ import annotations

from cortex.bus.events import RunCancelled, RunFailed
from tests.kernel.helpers import Run, agent, decisions, kinds


def test_fail_fast_fails_the_run_on_the_first_failure_and_cancels_the_rest():
    run = Run(agent(fail_fast=True))
    run.start()
    run.declare("a")
    run.declare("b")
    run.declare("c", depends_on=("a",))
    out = run.fail("a")
    assert kinds(out) == [
        "turn.cancelled",
        "cancel_work:turn",
        "action.cancelled",
        "cancel_work:action",
        "action.cancelled",
        "run.failed",
    ]
    assert [d[1] for d in decisions(out)] == ["b", "c"]
    failed = run.last(RunFailed).data
    assert failed.code == "action_failed" and "action a failed: boom: it broke" == failed.reason


def test_fail_fast_counts_denials_too():
    run = Run(agent(fail_fast=True))
    run.start()
    out = run.declare("a", "teleport", {})
    assert kinds(out)[-1] == "run.failed"


def test_fail_fast_waits_until_retries_are_spent():
    run = Run(agent(fail_fast=True))
    run.start()
    run.declare("f", "fetch")
    assert kinds(run.fail("f", retryable=True)) == ["action.retried", "timer.set"]
    assert run.state.status == "running"


def test_without_fail_fast_a_failure_is_reported_to_the_model():
    run = Run()
    run.start()
    run.declare("a")
    run.end_turn("<action/>")
    out = run.fail("a")
    assert kinds(out) == ["turn.requested", "dispatch:llm"]
    assert 'status="error"' in out[0].data.messages[-1].content


def test_cancelling_the_run_cancels_live_actions_and_the_generating_turn():
    run = Run()
    run.start()
    run.declare("a")
    run.declare("b", depends_on=("a",))
    out = run.cancel("run")
    assert kinds(out) == [
        "turn.cancelled",
        "cancel_work:turn",
        "action.cancelled",
        "cancel_work:action",
        "action.cancelled",
        "run.cancelled",
    ]
    assert {d[2] for d in decisions(out)} == {"run_cancelled"}
    assert run.last(RunCancelled).data.reason == "user stop"
    assert run.state.status == "cancelled"


def test_cancelling_an_action_cancels_its_dependents():
    run = Run()
    run.start()
    run.declare("a")
    run.declare("b", depends_on=("a",))
    run.declare("c", depends_on=("b",))
    run.declare("d")
    out = run.cancel("action", action_id="a")
    assert decisions(out) == [
        ("action.cancelled", "a", "cancel_requested"),
        ("action.cancelled", "b", "dependency_cancelled"),
        ("action.cancelled", "c", "dependency_cancelled"),
    ]
    assert run.state.actions["d"].status == "scheduled"


def test_a_cancelled_action_frees_its_slot():
    run = Run(agent(max_parallel_actions=1))
    run.start()
    run.declare("a")
    run.declare("b")
    out = run.cancel("action", action_id="a")
    assert decisions(out)[-1] == ("action.scheduled", "b", "slot_freed")


def test_cancelling_a_generating_turn_cancels_its_actions_and_moves_on():
    run = Run()
    run.start()
    run.declare("a")
    out = run.cancel("turn", turn_id="t1")
    assert kinds(out) == [
        "turn.cancelled",
        "cancel_work:turn",
        "action.cancelled",
        "cancel_work:action",
        "turn.requested",
        "dispatch:llm",
    ]
    assert out[2].data.reason == "turn_cancelled"
    assert "your turn t1 was cancelled: user stop" in out[4].data.messages[-1].content


def test_a_turn_completed_after_its_cancellation_is_stale():
    run = Run()
    run.start()
    run.cancel("turn", turn_id="t1")
    assert run.end_turn("too late", turn="t1") == []


def test_cancelling_an_unknown_or_finished_action_decides_nothing():
    run = Run()
    run.start()
    run.declare("a")
    run.complete("a")
    assert run.cancel("action", action_id="a") == []
    assert run.cancel("action", action_id="ghost") == []
    assert run.cancel("turn", turn_id="t9") == []


def test_cancelling_an_ended_run_decides_nothing():
    run = Run()
    run.start()
    run.answer("done")
    assert run.cancel("run") == []
    assert run.state.status == "completed"


def test_a_worker_cancelling_an_action_cascades_to_its_dependents():
    run = Run()
    run.start()
    run.declare("a")
    run.declare("b", depends_on=("a",))
    out = run.worker_cancelled("a")
    assert decisions(out) == [("action.cancelled", "b", "dependency_cancelled")]


def test_a_cancelled_action_is_reported_to_the_model():
    run = Run()
    run.start()
    run.declare("a")
    run.end_turn("<action/>")
    out = run.cancel("action", action_id="a")
    user = out[-2].data.messages[-1].content
    assert (
        '<action_result id="a" status="error"' in user
        and "cancelled (cancel_requested): user stop" in user
    )


def test_cancelling_a_finished_turn_cancels_only_its_leftover_actions():
    run = Run()
    run.start()
    run.declare("bg", "fetch", mode="fire_and_forget")
    run.end_turn("<action/>")  # t2 is requested at once: nobody waits for bg
    out = run.cancel("turn", turn_id="t1")
    assert kinds(out) == ["action.cancelled", "cancel_work:action"]
    assert run.state.turn.status == "generating"
