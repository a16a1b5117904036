"""Scheduling: pools and lanes, modes, the parallel limit, timeouts and internal actions."""

from __future__ import annotations

from datetime import timedelta

from cortex.bus.work import ActionWork
from tests.kernel.helpers import Run, agent, decisions, first, kinds, tool


def test_a_tool_action_is_dispatched_to_its_pool_and_lane_with_a_timeout_timer():
    spec = agent(tool("browse", pool="tool", lane="browser", timeout_s=15))
    run = Run(spec)
    run.start()
    out = run.declare("a", "browse", {"url": "x"})
    assert kinds(out) == ["action.scheduled", "dispatch:tool", "timer.set"]
    command = out[1]
    assert command.subject == "cortex.work.tool.browser"
    work: ActionWork = command.item
    assert (work.action_id, work.attempt, work.timeout_s, work.tool) == ("a", 1, 15, spec.tools[0])
    assert work.causation_id == out[0].id and work.msg_id == "work:r1:a:1"
    timer = out[2].data
    assert (timer.timer_id, timer.purpose) == ("a/action_timeout/1", "action_timeout")
    assert timer.due == out[0].time + timedelta(seconds=15)


def test_non_tool_actions_go_to_their_own_pools():
    run = Run()
    run.start()
    out = run.declare("l", "summarise", {}, type="llm")
    out += run.declare("r", "browser", {}, type="relic")
    assert [k for k in kinds(out) if k.startswith("dispatch")] == ["dispatch:llm", "dispatch:relic"]


def test_the_agent_limit_caps_every_timeout():
    run = Run(agent(tool("slow", timeout_s=600), action_timeout_s=20))
    run.start()
    out = run.declare("a", "slow", {}, timeout_s=999)
    assert first(out, "dispatch:tool").item.timeout_s == 20


def test_a_declared_timeout_overrides_the_tool_default():
    run = Run(agent(tool("t", timeout_s=60)))
    run.start()
    out = run.declare("a", "t", {}, timeout_s=5)
    assert first(out, "dispatch:tool").item.timeout_s == 5


def test_sync_actions_are_scheduled_at_once_like_async_ones():
    run = Run()
    run.start()
    out = run.declare("a", mode="sync")
    assert first(out, "dispatch:tool").item.mode == "sync"


def test_fire_and_forget_actions_do_not_hold_the_next_turn():
    run = Run()
    run.start()
    run.declare("log", "fetch", {}, mode="fire_and_forget")
    out = run.end_turn("<action/>")
    assert kinds(out) == ["turn.requested", "dispatch:llm"]
    assert "log" not in out[0].data.messages[-1].content


def test_fire_and_forget_outcomes_after_the_run_ended_are_recorded_only():
    run = Run()
    run.start()
    run.declare("log", "fetch", {}, mode="fire_and_forget")
    run.answer("bye")
    assert run.state.status == "completed"
    assert run.complete("log") == []
    assert run.state.actions["log"].status == "completed"


def test_more_ready_actions_than_slots_are_throttled():
    run = Run(agent(max_parallel_actions=2))
    run.start()
    run.declare("a")
    run.declare("b")
    out = run.declare("c")
    assert decisions(out) == [("action.throttled", "c", "parallel_limit")]
    assert out[0].data.detail == "2 of 2 parallel actions running"


def test_a_freed_slot_goes_to_the_earliest_declared_throttled_action():
    run = Run(agent(max_parallel_actions=1))
    run.start()
    run.declare("a")
    run.declare("b")
    run.declare("c")
    out = run.complete("a")
    assert decisions(out)[0] == ("action.scheduled", "b", "slot_freed")
    assert run.state.actions["c"].status == "throttled"


def test_throttled_actions_are_not_throttled_twice():
    run = Run(agent(max_parallel_actions=1))
    run.start()
    run.declare("a")
    run.declare("b")
    out = run.declare("c")
    assert decisions(out) == [("action.throttled", "c", "parallel_limit")]


def test_slots_go_in_declaration_order_whether_an_action_waited_or_was_throttled():
    run = Run(agent(max_parallel_actions=1))
    run.start()
    run.declare("a")
    run.declare("b", depends_on=("a",))
    run.declare("c")
    out = run.complete("a")
    assert decisions(out) == [("action.scheduled", "b", "dependencies_met")]
    assert run.state.actions["c"].status == "throttled"


def test_a_waiting_action_that_becomes_ready_without_a_slot_is_throttled():
    run = Run(agent(max_parallel_actions=2))
    run.start()
    run.declare("a")
    run.declare("b")
    run.declare("c", depends_on=("a",))
    run.declare("d", depends_on=("a",))
    out = run.complete("a")
    assert decisions(out) == [
        ("action.scheduled", "c", "dependencies_met"),
        ("action.throttled", "d", "parallel_limit"),
    ]


def test_internal_actions_need_no_slot():
    run = Run(agent(max_parallel_actions=1))
    run.start()
    run.declare("a")
    out = run.declare("v", "set", {"name": "k", "value": 1}, type="internal")
    assert kinds(out) == ["action.scheduled", "action.completed"]


def test_internal_set_params_are_validated():
    run = Run()
    run.start()
    out = run.declare("v", "set", {"value": 1}, type="internal")
    assert decisions(out)[0] == ("action.denied", "v", "invalid_params")


def test_internal_cancel_cancels_another_action_and_reports_it():
    run = Run()
    run.start()
    run.declare("a")
    out = run.declare("stop", "cancel", {"action_id": "a"}, type="internal")
    assert kinds(out) == [
        "action.scheduled",
        "action.cancelled",
        "cancel_work:action",
        "action.completed",
    ]
    assert out[-1].data.result == {"cancelled": True}


def test_internal_cancel_of_an_unknown_action_fails():
    run = Run()
    run.start()
    out = run.declare("stop", "cancel", {"action_id": "ghost"}, type="internal")
    assert decisions(out)[-1] == ("action.failed", "stop", "unknown_action")
