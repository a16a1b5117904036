"""The `cortex run` view model: a pure fold of a run's events into what the display shows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from cortex.bus.events import (
    ActionCancelled, ActionCancelledData, ActionCompleted, ActionCompletedData, ActionDeclared, ActionDeclaredData,
    ActionDecisionData, ActionFailed, ActionFailedData, ActionProgress, ActionProgressData, ActionRetried,
    ActionScheduled, ActionStarted, ActionStartedData, ActionWaiting, Event, MessageReceived, MessageReceivedData,
    ParseErrorData, ParseErrorEvent, Ping, PingData, ResponseDelta, RunCancelled, RunCancelledData, RunCompleted,
    RunCompletedData, RunFailed, RunFailedData, RunRequested, RunRequestedData, RunStarted, RunStartedData,
    TextDeltaData, ThoughtDelta, TurnCompleted, TurnCompletedData, TurnRequested, TurnRequestedData, Usage,
)
from cortex.cli.run import exit_code
from cortex.cli.run_render import STATE_STYLES, total_usage
from cortex.cli.run_view import ACTION_STATES, RunView, fold
from cortex.specs import AgentSpec

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class Log:
    """Builds a run's events with increasing times (one second apart)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, cls: type[Event], data: Any) -> "Log":
        n = len(self.events)
        self.events.append(cls(id=f"e{n}", run_id="r1", time=T0 + timedelta(seconds=n), data=data))
        return self

    def declared(self, action_id: str, turn: str = "t1", name: str = "web.fetch") -> "Log":
        return self.add(ActionDeclared, ActionDeclaredData(turn_id=turn, action_id=action_id, type="tool", name=name))

    def decision(self, cls: type[Event], action_id: str, **kw: Any) -> "Log":
        return self.add(cls, ActionDecisionData(action_id=action_id, reason=kw.pop("reason", "r"), **kw))


def started_run() -> Log:
    return (
        Log()
        .add(RunRequested, RunRequestedData(agent=AgentSpec(name="research"), message="go"))
        .add(RunStarted, RunStartedData(agent="research"))
        .add(TurnRequested, TurnRequestedData(turn_id="t1", iteration=1, provider="p", model="m", messages=()))
    )


def test_a_run_shows_thoughts_actions_response_answer_and_usage() -> None:
    log = started_run()
    log.add(ThoughtDelta, TextDeltaData(turn_id="t1", text="Two sources "))
    log.add(ThoughtDelta, TextDeltaData(turn_id="t1", text="first."))
    log.declared("wiki").declared("facts", name="text.extract")
    log.decision(ActionScheduled, "wiki", pool="tool")
    log.decision(ActionWaiting, "facts", waiting_on=("wiki",))
    log.add(ActionStarted, ActionStartedData(action_id="wiki"))
    log.add(ActionCompleted, ActionCompletedData(action_id="wiki", result={}, latency_ms=312.0))
    log.add(ResponseDelta, TextDeltaData(turn_id="t1", text="Answer: $facts", final=True))
    log.add(TurnCompleted, TurnCompletedData(turn_id="t1", stop_reason="end", output="", usage=Usage(5, 3)))
    log.add(RunCompleted, RunCompletedData(response="Answer: 42", usage=Usage(5, 3)))
    view = fold(log.events)

    assert (view.run_id, view.agent, view.status) == ("r1", "research", "completed")
    turn = view.turns["t1"]
    assert turn.thought == "Two sources first." and turn.response == "Answer: $facts" and turn.state == "completed"
    wiki, facts = view.actions
    assert (wiki.state, wiki.label, wiki.duration_s()) == ("done", "done", 0.312)
    assert (facts.state, facts.label) == ("waiting", "waiting on $wiki")
    assert view.answer == "Answer: 42" and view.usage == Usage(5, 3)
    assert view.duration_s() == (log.events[-1].time - T0).total_seconds()
    assert exit_code(view) == 0


def test_a_running_action_shows_its_time_so_far() -> None:
    log = started_run().declared("a").decision(ActionScheduled, "a").add(ActionStarted, ActionStartedData(action_id="a"))
    action = fold(log.events).actions[0]
    assert action.state == "running" and action.started_at == log.events[-1].time
    assert action.duration_s(action.started_at + timedelta(seconds=2.5)) == 2.5
    assert action.duration_s() is None  # no clock in the fold: the renderer passes now


def test_progress_failure_retry_and_attempts() -> None:
    log = started_run().declared("a").decision(ActionScheduled, "a")
    log.add(ActionStarted, ActionStartedData(action_id="a"))
    log.add(ActionProgress, ActionProgressData(action_id="a", message="page 2", fraction=0.5))
    assert fold(log.events).actions[0].label == "running: page 2 50%"
    log.add(ActionFailed, ActionFailedData(action_id="a", code="http_503", error="busy", retryable=True))
    assert fold(log.events).actions[0].label == "failed: http_503: busy"
    log.decision(ActionRetried, "a", attempt=2, delay_s=0.5)
    assert fold(log.events).actions[0].label == "retrying (attempt 2): in 0.5s"
    log.add(ActionStarted, ActionStartedData(action_id="a", attempt=2))
    log.add(ActionFailed, ActionFailedData(action_id="a", code="http_503", error="busy", attempt=2))
    action = fold(log.events).actions[0]
    assert action.label == "failed (attempt 2): http_503: busy" and action.final


def test_a_finished_action_ignores_late_news() -> None:
    log = started_run().declared("a").decision(ActionScheduled, "a")
    log.add(ActionCancelled, ActionCancelledData(action_id="a", reason="run_cancelled"))
    log.add(ActionCompleted, ActionCompletedData(action_id="a", result=1))
    assert fold(log.events).actions[0].label == "cancelled: run_cancelled"


def test_a_reused_action_id_names_the_latest_action() -> None:
    log = started_run().declared("a").add(ActionCompleted, ActionCompletedData(action_id="a"))
    log.declared("a", turn="t2").decision(ActionScheduled, "a")
    view = fold(log.events)
    assert [(a.turn_id, a.state) for a in view.actions] == [("t1", "done"), ("t2", "scheduled")]
    assert list(view.turns) == ["t1", "t2"] and view.turns["t2"].action_ids == ["a"]


def test_failed_and_cancelled_runs_and_their_exit_codes() -> None:
    failed = fold(started_run().add(RunFailed, RunFailedData(code="max_iterations", reason="8 turns")).events)
    assert (failed.status, failed.error, exit_code(failed)) == ("failed", "max_iterations: 8 turns", 1)
    cancelled = fold(started_run().add(RunCancelled, RunCancelledData(reason="Ctrl-C")).events)
    assert (cancelled.status, exit_code(cancelled)) == ("cancelled", 130)
    unfinished = fold(started_run().events)
    assert exit_code(unfinished, timed_out=True) == 1 and exit_code(unfinished, interrupted=True) == 130


def test_a_message_reopens_a_completed_run_and_notes_keep_problems() -> None:
    log = started_run().add(RunCompleted, RunCompletedData(response="one"))
    log.add(MessageReceived, MessageReceivedData(text="more"))
    log.add(ParseErrorEvent, ParseErrorData(turn_id="t2", code="unclosed_tag", message="<action> not closed"))
    log.add(Ping, PingData())
    view = fold(log.events)
    assert view.status == "running" and view.answer == "" and view.ended_at is None
    assert view.notes == ["parse error in t2: unclosed_tag: <action> not closed"]
    assert view.events == len(log.events)


def test_usage_of_an_unfinished_run_sums_its_turns() -> None:
    log = started_run()
    for turn in ("t1", "t2"):
        log.add(TurnCompleted, TurnCompletedData(turn_id=turn, stop_reason="end", output="", usage=Usage(10, 2)))
    assert total_usage(fold(log.events)) == Usage(20, 4)
    assert total_usage(RunView()) == Usage(0, 0)


def test_the_renderer_has_a_style_for_every_action_state() -> None:
    assert set(STATE_STYLES) == set(ACTION_STATES)
