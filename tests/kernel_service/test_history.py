"""Given a run's log, when it is folded in decision order, then these decisions are missing (pure)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cortex.bus.events import (
    ActionCompleted,
    ActionCompletedData,
    ActionDeclared,
    ActionDeclaredData,
    Event,
    RunRequested,
    TimerData,
    TimerFired,
    TimerSet,
)
from cortex.bus.work import ActionWork, TurnWork
from cortex.kernel import history
from cortex.kernel.decider import RunState, replay, step
from cortex.kernel.history import advance, is_decision_output, rebuild
from cortex.kernel.timers import fired_event
from tests.kernel_service.support import run_requested

AT = datetime(2026, 1, 1, tzinfo=timezone.utc)


def declared(run_id: str, action_id: str, n: int) -> ActionDeclared:
    """The llm pool's action.declared for turn t1."""
    data = ActionDeclaredData(turn_id="t1", action_id=action_id, type="tool", name="echo", params={"text": "x"})
    return ActionDeclared(id=f"{run_id}:t1:declared:{n}", run_id=run_id, time=AT, causation_id="x:2", data=data)


def completed(run_id: str, action_id: str) -> ActionCompleted:
    """The tool pool's action.completed for attempt 1."""
    data = ActionCompletedData(action_id=action_id, result={"text": "x"})
    return ActionCompleted(id=f"{run_id}:{action_id}:1:completed", run_id=run_id, time=AT, data=data)


def _timer_data() -> TimerData:
    return TimerData(timer_id="a1/action_timeout/1", due=AT, purpose="action_timeout", action_id="a1")


def events_of(outputs: tuple[object, ...] | list[object]) -> list[Event]:
    """The events among a decision's outputs."""
    return [out for out in outputs if isinstance(out, Event)]


@pytest.fixture
def request_() -> RunRequested:
    """A run.requested."""
    return run_requested("h1")


def test_decision_outputs_are_told_by_their_ids(request_: RunRequested) -> None:
    outputs = events_of(step(RunState(), request_).outputs)
    assert outputs and all(is_decision_output(e) for e in outputs)
    timer = TimerSet(id="E:3", run_id="h1", time=AT, causation_id="E", data=_timer_data())
    assert is_decision_output(timer)
    assert not is_decision_output(fired_event(timer))  # "E:3:fired": an input
    assert not is_decision_output(request_)
    assert not is_decision_output(declared("h1", "a1", 1))  # a worker's id, caused by "x:2"
    assert not is_decision_output(TimerFired(id="E:1", run_id="h1", time=AT, data=_timer_data()))


def test_an_undecided_input_yields_its_decision_and_work(request_: RunRequested) -> None:
    result = advance(RunState(), [request_])
    decision = step(RunState(), request_)
    assert result.missing == events_of(decision.outputs)
    assert [type(c.item) for c in result.live_work()] == [TurnWork]
    assert result.state == decision.state and (result.inputs, result.decisions) == (1, 1)


def test_a_decided_input_yields_nothing(request_: RunRequested) -> None:
    outputs = events_of(step(RunState(), request_).outputs)
    result = advance(RunState(), [request_, *outputs])
    assert result.missing == [] and result.work == [] and result.decisions == 0
    assert result.state == step(RunState(), request_).state


def test_a_half_published_decision_yields_the_rest_and_its_work_again(request_: RunRequested) -> None:
    first, *rest = events_of(step(RunState(), request_).outputs)
    result = advance(RunState(), [request_, first])
    assert result.missing == rest
    assert len(result.live_work()) == 1


def test_outputs_fold_right_after_their_input_wherever_they_landed(request_: RunRequested) -> None:
    # The llm pool declared an action before the kernel's turn.requested reached the log.
    early = declared("h1", "a1", 1)
    log = [request_, early]
    result = advance(RunState(), log)
    assert [e.type for e in result.missing] == [
        "run.started", "turn.requested", "action.scheduled", "timer.set",
    ]
    assert result.state.actions["a1"].status == "scheduled"
    # Folded in plain log order the declaration would have come before the turn and been lost.
    outputs = result.missing
    assert "a1" not in replay([request_, early, *outputs]).actions
    assert rebuild([request_, early, *outputs]) == result.state


def test_work_already_answered_is_not_dispatched_again(request_: RunRequested) -> None:
    log = [request_, declared("h1", "a1", 1), completed("h1", "a1")]
    result = advance(RunState(), log)
    assert result.state.actions["a1"].status == "completed"
    assert any(isinstance(c.item, ActionWork) for c in result.work)
    assert [type(c.item) for c in result.live_work()] == [TurnWork]  # the turn is still generating


def test_advancing_in_steps_equals_advancing_at_once(request_: RunRequested) -> None:
    inputs = [request_, declared("h1", "a1", 1), declared("h1", "a2", 2), completed("h1", "a1")]
    whole = advance(RunState(), inputs)
    state, missing = RunState(), []
    for event in inputs:
        part = advance(state, [event])
        state, missing = part.state, missing + part.missing
    assert state == whole.state and missing == whole.missing


def test_an_input_the_decider_fails_on_decides_nothing(request_: RunRequested, monkeypatch: pytest.MonkeyPatch) -> None:
    real_step = history.step

    def failing(state: RunState, event: Event) -> object:
        if event.id == "h1:t1:declared:1":
            raise RuntimeError("boom")
        return real_step(state, event)

    monkeypatch.setattr(history, "step", failing)
    result = advance(RunState(), [request_, declared("h1", "a1", 1), declared("h1", "a2", 2)])
    assert [(e.id, reason) for e, reason in result.failed] == [("h1:t1:declared:1", "RuntimeError('boom')")]
    assert "a1" not in result.state.actions and result.state.actions["a2"].status == "scheduled"
