"""The pure folds: given a log, the read models say what happened (no NATS involved)."""

from __future__ import annotations

from datetime import timedelta

import msgspec

from cortex.bus import events as ev
from cortex.bus.events import Event
from cortex.projections.agents import AgentView, define_agent, fold_agent_run
from cortex.projections.plugins import PluginView, fold_plugin, plugin_summary, worker_status
from cortex.projections.progressions import ActionStep, ProgressionView, TextStep, TurnStep, fold_progression
from cortex.projections.replay import is_decision, replay_run
from cortex.projections.runs import RunView, UsageTotals, fold_run
from tests.projections.events import T0, Log, chatty_run, fold_all, golden_events, plugin_event


def actions(progression: ProgressionView) -> dict[str, ActionStep]:
    return {s.action_id: s for s in progression.steps if isinstance(s, ActionStep) and s.state != "rejected"}


# ---- runs ----------------------------------------------------------------------------


def test_the_run_view_of_the_golden_run() -> None:
    events = golden_events()
    run, _ = fold_all(events)
    assert run is not None
    assert (run.run_id, run.agent, run.status) == ("golden", "researcher", "completed")
    assert run.message.startswith("Compare what Wikipedia")
    assert run.response == next(e.data.response for e in events if isinstance(e, ev.RunCompleted))
    completions = [e for e in events if isinstance(e, ev.TurnCompleted)]
    prompt = sum(e.data.usage.prompt_tokens for e in completions)
    completion = sum(e.data.usage.completion_tokens for e in completions)
    assert run.usage == UsageTotals(prompt, completion, prompt + completion)
    assert run.turns == 2 and run.messages == 2
    assert run.actions == sum(isinstance(e, ev.ActionDeclared) for e in events)
    assert run.created_at == events[0].time and run.ended_at == next(
        e.time for e in events if isinstance(e, ev.RunCompleted)
    )


def test_failed_cancelled_and_reopened_runs() -> None:
    log = Log("r1")
    log.requested()
    log.add(ev.RunStarted, ev.RunStartedData, agent="writer")
    log.add(ev.RunCompleted, ev.RunCompletedData, response="first")
    completed, _ = fold_all(log.events)
    log.add(ev.MessageReceived, ev.MessageReceivedData, text="and more?")
    reopened, _ = fold_all(log.events)
    log.add(ev.RunFailed, ev.RunFailedData, code="max_iterations", reason="too many turns")
    failed, _ = fold_all(log.events)
    assert completed.status == "completed" and completed.ended_at is not None
    assert reopened.status == "running" and reopened.ended_at is None and reopened.messages == 2
    assert (failed.status, failed.error_code, failed.error) == ("failed", "max_iterations", "too many turns")

    cancelled = Log("r2")
    cancelled.requested(parent_run_id="r1", parent_action_id="helper")
    cancelled.add(ev.RunCancelled, ev.RunCancelledData, reason="user stop")
    view, _ = fold_all(cancelled.events)
    assert (view.status, view.error, view.parent_run_id, view.parent_action_id) == ("cancelled", "user stop", "r1", "helper")


def test_folding_twice_changes_nothing() -> None:
    events = chatty_run()
    assert fold_all(events, twice=True) == fold_all(events)


def test_irrelevant_events_do_not_create_views() -> None:
    chunk = ev.TurnChunk(id="x", run_id="r9", time=T0, data=ev.TurnChunkData(turn_id="t1", seq=1, text="a"))
    assert fold_run(None, chunk, 1) is None
    assert fold_progression(None, chunk, 1) is None


# ---- progressions --------------------------------------------------------------------


def test_the_progression_orders_messages_turns_thoughts_actions_and_responses() -> None:
    _, progression = fold_all(chatty_run())
    kinds = [type(s).__name__ if not isinstance(s, TextStep) else s.channel for s in progression.steps]
    assert kinds == [
        "MessageStep", "TurnStep", "thought", "ActionStep", "thought", "ActionStep", "response", "TurnStep", "response",
    ]
    texts = [s.text for s in progression.steps if isinstance(s, TextStep)]
    assert texts == ["Count the words first.", "Then check.", "Working on it", "Streams persist."]
    final = progression.steps[-1]
    assert isinstance(final, TextStep) and final.final and final.turn_id == "t2"
    turns = [s for s in progression.steps if isinstance(s, TurnStep)]
    assert [(t.turn_id, t.status, t.worker, t.usage.total_tokens) for t in turns] == [
        ("t1", "completed", "llm-1", 120), ("t2", "completed", "llm-1", 180),
    ]


def test_action_steps_keep_states_timings_and_history() -> None:
    events = chatty_run()
    _, progression = fold_all(events)
    count, check = actions(progression)["count"], actions(progression)["check"]
    assert [h.state for h in count.history] == ["declared", "scheduled", "started", "completed"]
    assert (count.state, count.worker, count.latency_ms, count.result) == ("completed", "tool-1", 12.5, {"words": 3})
    assert (count.progress, count.fraction) == ("half way", 0.5)
    assert count.declared_at < count.scheduled_at < count.started_at < count.ended_at
    assert [h.state for h in check.history] == ["declared", "waiting", "scheduled", "started", "failed"]
    assert check.depends_on == ("count",) and check.waiting_on == ()  # no longer waiting once scheduled
    assert (check.state, check.reason, check.error) == ("failed", "tool_error", "boom")

    # while it waited, the step said on what
    waiting_at = next(i for i, e in enumerate(events) if isinstance(e, ev.ActionWaiting))
    _, earlier = fold_all(events[: waiting_at + 1])
    assert (actions(earlier)["check"].state, actions(earlier)["check"].waiting_on) == ("waiting", ("count",))


def test_the_golden_progression_follows_retries_timeouts_denials_and_cancellation() -> None:
    _, progression = fold_all(golden_events())
    steps = actions(progression)
    assert [h.state for h in steps["wiki"].history][:5] == ["declared", "scheduled", "failed", "retry_wait", "throttled"]
    assert steps["wiki"].state == "completed" and steps["wiki"].attempt == 2
    assert "timed_out" in [h.state for h in steps["blog"].history]
    assert (steps["blog"].state, steps["blog"].reason) == ("cancelled", "cancel_requested")
    assert (steps["oops"].state, steps["oops"].reason) == ("failed", "unknown_tool")
    assert [h.state for h in steps["oops"].history] == ["declared", "denied", "failed"]
    assert steps["facts"].depends_on == ("wiki", "arxiv")


def test_a_duplicate_id_is_rejected_without_touching_the_holder() -> None:
    log = Log("r3")
    log.requested()
    log.add(ev.TurnRequested, ev.TurnRequestedData, turn_id="t1", iteration=1, provider="p", model="m", messages=())
    log.add(ev.ActionDeclared, ev.ActionDeclaredData, turn_id="t1", action_id="a", type="tool", name="x")
    log.add(ev.ActionScheduled, ev.ActionDecisionData, action_id="a", reason="dependencies_met")
    log.add(ev.ActionDeclared, ev.ActionDeclaredData, turn_id="t1", action_id="a", type="tool", name="y")
    log.add(ev.ActionDenied, ev.ActionDecisionData, action_id="a", reason="duplicate_id", detail="taken")
    log.add(ev.ActionCompleted, ev.ActionCompletedData, action_id="a", result=1)
    _, progression = fold_all(log.events)
    first, second = [s for s in progression.steps if isinstance(s, ActionStep)]
    assert (first.name, first.state) == ("x", "completed")
    assert (second.name, second.state, second.reason) == ("y", "rejected", "duplicate_id")


def test_late_reports_for_finished_actions_do_not_change_the_state() -> None:
    log = Log("r4")
    log.requested()
    log.add(ev.TurnRequested, ev.TurnRequestedData, turn_id="t1", iteration=1, provider="p", model="m", messages=())
    log.add(ev.ActionDeclared, ev.ActionDeclaredData, turn_id="t1", action_id="a", type="tool", name="x")
    log.add(ev.ActionCancelled, ev.ActionCancelledData, action_id="a", reason="cancel_requested")
    log.add(ev.ActionCompleted, ev.ActionCompletedData, action_id="a", result=1)
    _, progression = fold_all(log.events)
    [step] = [s for s in progression.steps if isinstance(s, ActionStep)]
    assert step.state == "cancelled" and step.history[-1].reason.startswith("late, ignored")


def test_big_params_and_results_are_cut() -> None:
    log = Log("r5")
    log.requested()
    log.add(ev.TurnRequested, ev.TurnRequestedData, turn_id="t1", iteration=1, provider="p", model="m", messages=())
    log.add(ev.ActionDeclared, ev.ActionDeclaredData, turn_id="t1", action_id="a", type="tool", name="x",
            params={"text": "y" * 10_000})
    _, progression = fold_all(log.events)
    [step] = [s for s in progression.steps if isinstance(s, ActionStep)]
    assert isinstance(step.params, str) and len(step.params) == 2000 and step.params.endswith("…")


# ---- agents --------------------------------------------------------------------------


def agent_fold(events: list[Event], twice: bool = False) -> AgentView | None:
    runs: dict[str, RunView | None] = {}
    agent = None
    for seq, event in enumerate(events, start=1):
        for _ in range(2 if twice else 1):
            runs[event.run_id] = fold_run(runs.get(event.run_id), event, seq)
            agent = fold_agent_run(agent, event, runs[event.run_id], seq)
    return agent


def test_agent_counters_follow_the_runs() -> None:
    one, two = Log("r1"), Log("r2")
    one.requested()
    two.requested()
    one.add(ev.RunStarted, ev.RunStartedData, agent="writer")
    interleaved = [one.events[0], two.events[0], one.events[1]]
    view = agent_fold(interleaved)
    assert (view.total_runs, view.active_runs, view.last_run_id) == (2, ("r1", "r2"), "r2")

    one.add(ev.RunCompleted, ev.RunCompletedData, response="done")
    two.add(ev.RunFailed, ev.RunFailedData, code="turn_failed", reason="x")
    events = [*interleaved, one.events[2], two.events[1]]
    view = agent_fold(events)
    assert (view.total_runs, view.active_runs, view.last_run_status) == (2, (), "failed")
    assert agent_fold(events, twice=True) == view

    one.add(ev.MessageReceived, ev.MessageReceivedData, text="again")
    view = agent_fold([*events, one.events[3]])
    assert view.active_runs == ("r1",)  # a chat message re-opens a completed run


def test_agent_definitions_come_from_the_applied_spec() -> None:
    spec = {"name": "writer", "provider": "openai", "model": "gpt", "description": "Writes.",
            "tools": [{"name": "text.count"}], "agents": ["helper"], "context_feeds": [{"name": "news"}]}
    view = define_agent(None, "writer", spec, revision=3)
    assert (view.defined, view.provider, view.tools, view.agents, view.context_feeds, view.revision) == (
        True, "openai", ("text.count",), ("helper",), ("news",), 3,
    )
    counted = msgspec.structs.replace(view, total_runs=5)
    assert define_agent(counted, "writer", {**spec, "model": "gpt-2"}, 4).total_runs == 5  # counters survive


# ---- plugins -------------------------------------------------------------------------


def test_plugin_workers_live_stale_and_stopped() -> None:
    view: PluginView | None = None
    feed = [
        plugin_event("registered", "notes", "w1", T0),
        plugin_event("registered", "notes", "w2", T0 + timedelta(seconds=1)),
        plugin_event("heartbeat", "notes", "w1", T0 + timedelta(seconds=40)),
        plugin_event("unregistered", "notes", "w2", T0 + timedelta(seconds=41)),
    ]
    for seq, event in enumerate(feed, start=1):
        view = fold_plugin(view, event, seq)
        assert fold_plugin(view, event, seq) is view  # a redelivery changes nothing
    assert view is not None and view.name == "notes"
    assert [t.name for t in view.tools] == ["notes.run"] and view.permissions == {"network": ["example.org"]}
    now = T0 + timedelta(seconds=60)
    assert worker_status(view.workers["w1"], now, interval_s=10) == "live"
    assert worker_status(view.workers["w1"], T0 + timedelta(seconds=71), interval_s=10) == "stale"
    assert worker_status(view.workers["w2"], now, interval_s=10) == "stopped"
    summary = plugin_summary(view, now, interval_s=10)
    assert (summary["status"], summary["live_workers"], summary["workers"]["w2"]["status"]) == ("live", 1, "stopped")
    assert plugin_summary(view, T0 + timedelta(hours=1), interval_s=10)["status"] == "stale"


def test_workers_unseen_for_a_day_are_forgotten() -> None:
    view = fold_plugin(None, plugin_event("registered", "notes", "old", T0), 1)
    view = fold_plugin(view, plugin_event("registered", "notes", "new", T0 + timedelta(days=2)), 2)
    assert list(view.workers) == ["new"]


# ---- replay ----------------------------------------------------------------------------


def test_replaying_the_golden_log_reproduces_every_decision() -> None:
    events = golden_events()
    report = replay_run(events)
    decisions = [e for e in events if is_decision(e)]
    assert report.ok, report.problems()
    assert report.recorded == report.reproduced == len(decisions) > 20
    assert report.state.status == "completed"


def test_replay_reports_a_changed_a_missing_and_an_extra_decision() -> None:
    events = golden_events()
    index = next(i for i, e in enumerate(events) if isinstance(e, ev.ActionScheduled))
    changed = msgspec.structs.replace(events[index], data=msgspec.structs.replace(events[index].data, pool="elsewhere"))
    dropped = next(i for i, e in enumerate(events) if isinstance(e, ev.TimerSet))
    extra = ev.ActionCancelled(id="in2:99", causation_id="in2", run_id="golden", time=T0,
                               data=ev.ActionCancelledData(action_id="wiki", reason="made_up"))
    tampered = [changed if i == index else e for i, e in enumerate(events) if i != dropped] + [extra]
    report = replay_run(tampered)
    assert not report.ok
    assert report.different == [events[index].id]
    assert report.missing == [events[dropped].id]
    assert report.unexpected == ["in2:99"]
