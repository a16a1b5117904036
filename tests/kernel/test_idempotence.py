"""Exactly-once: redelivered and stale facts decide nothing; a log folds back to the state."""

from __future__ import annotations

import msgspec

from cortex.bus.events import ActionCompleted, ActionCompletedData
from cortex.kernel.decider import DECISION_INPUTS, FOLDED, RunState, replay, step
from tests.kernel.helpers import Run, agent


def _busy_run() -> Run:
    run = Run(agent(max_parallel_actions=2))
    run.start()
    run.declare("a")
    run.declare("f", "fetch")
    run.declare("c", "fetch", {"x": "$a"})
    run.fail("f", retryable=True)
    run.complete("a", {"v": 1})
    run.end_turn("<action/>")
    run.fire("f", "action_retry")
    return run


def test_every_redelivered_input_decides_nothing_and_changes_nothing():
    run = _busy_run()
    inputs = [e for e in run.log if hasattr(e, "time") and ":" not in e.id]
    for event in inputs:
        decision = step(run.state, event)
        assert decision.outputs == () and decision.state == run.state


def test_the_kernels_own_outputs_fed_back_are_ignored():
    run = _busy_run()
    outputs = [e for e in run.log if hasattr(e, "time") and ":" in e.id]
    assert outputs
    for event in outputs:
        decision = step(run.state, event)
        assert decision.outputs == () and decision.state == run.state


def test_folding_the_log_rebuilds_exactly_the_stepped_state():
    run = _busy_run()
    events = [e for e in run.log if hasattr(e, "time")]
    assert replay(events) == run.state


def test_a_result_for_a_finished_action_is_stale():
    run = Run()
    run.start()
    run.declare("a")
    run.complete("a", 1)
    assert run.complete("a", 2, attempt=1) == []
    assert run.state.actions["a"].result == 1


def test_a_second_run_requested_is_ignored():
    run = Run()
    run.start()
    assert run.start("again") == []


def test_a_second_turn_completed_is_ignored():
    run = Run()
    run.start()
    run.declare("a")
    run.end_turn("<action/>")
    assert run.end_turn("<action/>", turn="t1") == []


def test_a_result_for_an_action_never_dispatched_is_ignored():
    run = Run(agent(max_parallel_actions=1))
    run.start()
    run.declare("a")
    run.declare("b")
    assert run.complete("b", attempt=1) == []
    assert run.state.actions["b"].status == "throttled"


def test_facts_for_unknown_actions_are_ignored():
    run = Run()
    run.start()
    assert run.complete("ghost", attempt=1) == []
    assert run.fail("ghost", attempt=1) == []


def test_decision_inputs_are_folded_types():
    assert DECISION_INPUTS <= FOLDED
    assert {"turn.chunk", "action.started", "response.delta"}.isdisjoint(FOLDED)


def test_events_of_another_run_are_ignored():
    run = Run()
    run.start()
    stray = run.event(ActionCompleted, ActionCompletedData(action_id="a", result=1))
    assert step(run.state, msgspec.structs.replace(stray, run_id="other")).state == run.state
    assert run.message("same run") == [] and run.state.inbox == ("same run",)


def test_the_state_survives_a_json_snapshot():
    state = _busy_run().state
    assert msgspec.json.decode(msgspec.json.encode(state), type=RunState) == state
