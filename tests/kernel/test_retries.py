"""Retries with backoff per tool policy, timeouts via timers, and stale attempts."""

from __future__ import annotations

from datetime import timedelta

from cortex.bus.events import TimerFired
from cortex.specs import RetryPolicy
from tests.kernel.helpers import Run, agent, decisions, first, kinds, tool


def test_a_retryable_failure_with_attempts_left_is_retried_after_a_backoff():
    run = Run()
    run.start()
    run.declare("f", "fetch")
    out = run.fail("f", retryable=True)
    assert kinds(out) == ["action.retried", "timer.set"]
    retried = out[0].data
    assert (retried.reason, retried.attempt, retried.delay_s) == ("retryable_failure", 2, 1.0)
    assert retried.detail == "boom: it broke"
    timer = out[1].data
    assert (timer.timer_id, timer.purpose) == ("f/action_retry/2", "action_retry")
    assert timer.due == out[0].time + timedelta(seconds=1)


def test_the_retry_timer_schedules_the_next_attempt():
    run = Run()
    run.start()
    run.declare("f", "fetch")
    run.fail("f", retryable=True)
    out = run.fire("f", "action_retry")
    assert decisions(out)[0] == ("action.scheduled", "f", "retry_due")
    assert first(out, "dispatch:tool").item.attempt == 2
    assert first(out, "timer.set").data.timer_id == "f/action_timeout/2"


def test_backoff_grows_by_the_factor_and_is_capped():
    run = Run()
    run.start()
    run.declare("f", "fetch")
    delays = []
    for _ in range(2):
        delays.append(run.fail("f", retryable=True)[0].data.delay_s)
        run.fire("f", "action_retry")
    assert delays == [1.0, 2.0]
    capped = Run(
        agent(
            tool(
                "t",
                retry=RetryPolicy(max_attempts=9, backoff_s=1, backoff_factor=10, max_backoff_s=4),
            )
        )
    )
    capped.start()
    capped.declare("t", "t")
    capped.fail("t", retryable=True)
    capped.fire("t", "action_retry")
    assert capped.fail("t", retryable=True)[0].data.delay_s == 4


def test_the_last_attempt_failing_is_final():
    run = Run()
    run.start()
    run.declare("f", "fetch")
    for _ in range(2):
        run.fail("f", retryable=True)
        run.fire("f", "action_retry")
    out = run.fail("f", retryable=True)
    assert "action.retried" not in kinds(out)
    assert run.state.actions["f"].status == "failed"


def test_a_non_retryable_failure_is_not_retried():
    run = Run()
    run.start()
    run.declare("f", "fetch")
    out = run.fail("f", retryable=False)
    assert out == [] and run.state.actions["f"].status == "failed"


def test_a_declared_retry_can_only_lower_the_attempts():
    run = Run()
    run.start()
    run.declare("f", "fetch", retry=0)
    assert run.fail("f", retryable=True) == []
    run2 = Run()
    run2.start()
    run2.declare("f", "fetch", retry=10)
    run2.fail("f", retryable=True)
    run2.fire("f", "action_retry")
    run2.fail("f", retryable=True)
    run2.fire("f", "action_retry")
    assert "action.retried" not in kinds(run2.fail("f", retryable=True))


def test_a_retry_waits_for_a_slot_when_the_limit_is_reached():
    run = Run(agent(max_parallel_actions=1))
    run.start()
    run.declare("f", "fetch")
    run.fail("f", retryable=True)
    run.declare("g")  # takes the slot f gave up while backing off
    out = run.fire("f", "action_retry")
    assert decisions(out) == [("action.throttled", "f", "parallel_limit")]


def test_a_timeout_times_out_the_attempt_stops_it_and_retries():
    run = Run()
    run.start()
    run.declare("f", "fetch")
    out = run.fire("f", "action_timeout")
    assert kinds(out) == ["action.timed_out", "cancel_work:action", "action.retried", "timer.set"]
    assert out[0].data.reason == "timeout" and out[0].data.attempt == 1
    assert out[1].attempt == 1 and out[1].target_id == "f"
    assert out[2].data.reason == "timeout"


def test_a_timeout_of_the_last_attempt_fails_the_action():
    run = Run()
    run.start()
    run.declare("s")
    out = run.fire("s", "action_timeout")
    assert kinds(out)[:3] == ["action.timed_out", "cancel_work:action", "action.failed"]
    assert out[2].data.code == "timeout"


def test_a_non_idempotent_tool_that_timed_out_is_not_retried():
    run = Run(agent(tool("pay", idempotent=False, retry=RetryPolicy(max_attempts=3))))
    run.start()
    run.declare("p", "pay")
    out = run.fire("p", "action_timeout")
    assert "action.retried" not in kinds(out)
    assert decisions(out)[-1] == ("action.failed", "p", "timeout")


def test_a_timeout_timer_after_the_action_completed_is_stale():
    run = Run()
    run.start()
    run.declare("f", "fetch")
    run.complete("f")
    assert run.fire("f", "action_timeout") == []


def test_a_timeout_timer_of_an_earlier_attempt_is_stale():
    run = Run()
    run.start()
    run.declare("f", "fetch")
    first_timeout = next(e for e in run.log if getattr(e, "type", "") == "timer.set")
    run.fail("f", retryable=True)
    run.fire("f", "action_retry")
    assert run.feed(run.event(TimerFired, first_timeout.data)) == []


def test_a_late_result_of_an_earlier_attempt_is_taken():
    run = Run()
    run.start()
    run.declare("f", "fetch")
    run.fire("f", "action_timeout")  # attempt 2 waits for its backoff
    run.complete("f", "late but fine", attempt=1)
    assert run.state.actions["f"].status == "completed"
    assert run.fire("f", "action_retry") == []


def test_a_failure_of_an_earlier_attempt_is_stale():
    run = Run()
    run.start()
    run.declare("f", "fetch")
    run.fail("f", retryable=True)
    run.fire("f", "action_retry")
    assert run.fail("f", attempt=1) == []
    assert run.state.actions["f"].status == "scheduled"
