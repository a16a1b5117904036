"""What a turn reads from its run (``TurnSignals``, pure): attempts, cancels, sync outcomes."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from cortex.bus.events import (
    ActionCancelled,
    ActionCancelledData,
    ActionCompleted,
    ActionCompletedData,
    ActionDecisionData,
    ActionDeclared,
    ActionDeclaredData,
    ActionFailed,
    ActionFailedData,
    ActionRetried,
    CancelRequested,
    CancelRequestedData,
    Event,
    TurnCompleted,
    TurnCompletedData,
    TurnStarted,
    TurnStartedData,
)
from cortex.workers.turn_signals import TurnSignals, injected_result

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
A1 = ActionDeclaredData(turn_id="t2", action_id="a1", type="tool", name="clock.now", mode="sync")


def ev(cls: type[Event], n: int, data: Any) -> Event:
    """An event of run r1."""
    return cls(id=f"r1:{n}", run_id="r1", time=T0, data=data)


def signals(*events: Event, grace: float = 2.0) -> TurnSignals:
    """Turn t2's fold over ``events``, the n-th at stream sequence n, seen at time 0."""
    folded = TurnSignals("t2", retry_grace_s=grace)
    for seq, event in enumerate(events, start=1):
        folded.observe(event, seq, 0.0)
    return folded


def test_attempts_and_the_end_of_this_turn_only() -> None:
    s = signals(
        ev(TurnStarted, 1, TurnStartedData(turn_id="t1", attempt=3)),
        ev(TurnCompleted, 2, TurnCompletedData(turn_id="t1", stop_reason="end_turn", output="")),
        ev(TurnStarted, 3, TurnStartedData(turn_id="t2", attempt=1)),
        ev(ActionDeclared, 4, A1),
    )
    assert s.attempts == 1 and s.finished is None and s.cancel is None
    assert s.declared["a1"].seq == 4


def test_a_cancel_of_another_turn_is_not_ours_but_one_of_the_run_is() -> None:
    other = ev(CancelRequested, 1, CancelRequestedData(target="turn", turn_id="t1"))
    assert signals(other).cancel is None
    run = ev(CancelRequested, 2, CancelRequestedData(target="run"))
    assert signals(other, run).cancel == run


def test_only_outcomes_after_the_declaration_count() -> None:
    old = ev(ActionCompleted, 1, ActionCompletedData(action_id="a1", result="old"))
    new = ev(ActionCompleted, 3, ActionCompletedData(action_id="a1", result="new"))
    s = signals(old, ev(ActionDeclared, 2, A1), new)
    assert s.outcome("a1", after_seq=2, now=0.0) == new
    assert signals(old).outcome("a1", after_seq=2, now=9.0) is None


def test_a_retryable_failure_is_final_only_when_no_retry_follows_within_the_grace() -> None:
    failed = ev(ActionFailed, 2, ActionFailedData(action_id="a1", code="x", error="y", retryable=True))
    s = signals(ev(ActionDeclared, 1, A1), failed, grace=2.0)
    assert s.outcome("a1", 1, now=1.9) is None
    assert s.outcome("a1", 1, now=2.0) == failed
    retried = ev(ActionRetried, 3, ActionDecisionData(action_id="a1", reason="retry", attempt=2))
    s = signals(ev(ActionDeclared, 1, A1), failed, retried, grace=2.0)
    assert s.outcome("a1", 1, now=60.0) is None  # the next attempt's outcome is awaited
    cancelled = ev(ActionCancelled, 4, ActionCancelledData(action_id="a1", reason="timeout"))
    s.observe(cancelled, 4, 61.0)
    assert s.outcome("a1", 1, now=61.0) == cancelled


def test_injected_results_read_like_the_kernels() -> None:
    ok = ev(ActionCompleted, 1, ActionCompletedData(action_id="a1", result={"t": "12:00"}, latency_ms=7.6))
    assert injected_result(A1, ok, 100) == (
        '<action_result id="a1" status="ok" latency_ms="8"><![CDATA[{"t":"12:00"}]]></action_result>'
    )
    gone = ev(ActionCancelled, 2, ActionCancelledData(action_id="a1", reason="timeout", detail="slow"))
    assert injected_result(A1, gone, 100) == (
        '<action_result id="a1" status="error" latency_ms="0">'
        "<![CDATA[cancelled (timeout): slow]]></action_result>"
    )
    long = ev(ActionCompleted, 3, ActionCompletedData(action_id="a1", result="x" * 50))
    assert "x" * 10 + "... [40 more characters]" in injected_result(A1, long, 10)
