"""Run lifecycle and turns: given earlier facts, when one more, then these decisions."""

from __future__ import annotations

from datetime import timedelta

import msgspec

from cortex.bus.events import RunCompleted, RunFailed, RunRequested, RunRequestedData, TurnRequested
from cortex.bus.work import TurnWork
from cortex.kernel.decider import DispatchWork, decide, evolve
from tests.kernel.helpers import T0, Run, agent, first, kinds


def test_run_requested_starts_the_run_and_requests_the_first_turn():
    run = Run()
    out = run.start("What is NATS?")
    assert kinds(out) == ["run.started", "turn.requested", "dispatch:llm"]
    request = out[1].data
    assert (request.turn_id, request.iteration) == ("t1", 1)
    assert [m.role for m in request.messages] == ["system", "user"]
    assert request.messages[1].content == "What is NATS?"
    assert request.tools == run.spec.tools
    assert request.provider_options["prompt_version"] == "v1"


def test_outputs_take_ids_time_and_causation_from_the_trigger():
    run = Run()
    out = run.start()
    trigger = run.log[0]
    assert [o.id for o in out if hasattr(o, "id")] == [f"{trigger.id}:1", f"{trigger.id}:2"]
    assert all(
        o.time == trigger.time and o.causation_id == trigger.id for o in out if hasattr(o, "time")
    )
    assert all(o.correlation_id == "corr" and o.run_id == "r1" for o in out if hasattr(o, "time"))


def test_turn_work_carries_the_request_and_points_at_its_event():
    run = Run()
    out = run.start()
    command = out[2]
    assert isinstance(command, DispatchWork) and isinstance(command.item, TurnWork)
    assert command.subject == "cortex.work.llm"
    assert command.item.request == out[1].data
    assert command.item.causation_id == out[1].id
    assert command.item.msg_id == "work:r1:t1"


def test_final_response_completes_the_run_with_summed_usage():
    run = Run()
    run.start()
    run.end_turn('<thought>easy</thought><response final="true">Forty-two.</response>', tokens=7)
    assert run.state.status == "completed"
    done = run.last(RunCompleted).data
    assert done.response == "Forty-two."
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (7, 7)


def test_plain_text_without_actions_is_taken_as_the_answer():
    run = Run()
    run.start()
    out = run.end_turn("Hello there!")
    assert kinds(out) == ["run.completed"]
    assert out[0].data.response == "Hello there!"


def test_a_non_final_response_alone_is_taken_as_the_answer():
    run = Run()
    run.start()
    out = run.end_turn('<response final="false">It is 4.</response>')
    assert out[0].data.response == "It is 4."


def test_an_empty_turn_asks_again_with_a_nudge():
    run = Run()
    run.start()
    out = run.end_turn("<thought>hmm</thought>")
    assert kinds(out) == ["turn.requested", "dispatch:llm"]
    assert out[0].data.turn_id == "t2"
    assert "no action and no answer" in out[0].data.messages[-1].content


def test_max_iterations_fails_the_run():
    run = Run(agent(max_iterations=2))
    run.start()
    run.end_turn("")
    out = run.end_turn("")
    assert kinds(out) == ["run.failed"]
    assert out[0].data.code == "max_iterations"
    assert run.state.status == "failed"


def test_zero_iterations_fail_at_once():
    run = Run(agent(max_iterations=0))
    out = run.start()
    assert kinds(out) == ["run.started", "run.failed"]


def test_turn_failed_fails_the_run_and_cancels_live_actions():
    run = Run()
    run.start()
    run.declare("a")
    out = run.turn_failed()
    assert kinds(out) == ["action.cancelled", "cancel_work:action", "run.failed"]
    assert out[0].data.reason == "run_failed"
    assert run.last(RunFailed).data.code == "turn_failed"


def test_next_turn_waits_for_the_results_of_the_turn():
    run = Run()
    run.start()
    run.declare("a")
    run.declare("b")
    assert run.end_turn("<action/>") == []
    assert run.complete("a") == []
    out = run.complete("b")
    assert kinds(out) == ["turn.requested", "dispatch:llm"]


def test_final_response_waits_for_pending_actions_then_resolves_refs():
    run = Run()
    run.start()
    run.declare("facts")
    assert run.answer("Found: $facts.n items") == []
    out = run.complete("facts", {"n": 3})
    assert kinds(out) == ["run.completed"]
    assert out[0].data.response == "Found: 3 items"


def test_final_response_that_is_one_reference_becomes_its_json():
    run = Run()
    run.start()
    run.declare("facts")
    run.answer("$facts")
    out = run.complete("facts", {"n": 3})
    assert out[0].data.response == '{"n":3}'


def test_dollar_words_that_name_no_action_stay_as_written():
    run = Run()
    run.start()
    out = run.answer("Set $HOME, pay $$5")
    assert out[0].data.response == "Set $HOME, pay $5"


def test_final_response_with_a_failed_reference_asks_again():
    run = Run()
    run.start()
    run.declare("facts")
    run.answer("Answer: $facts")
    out = run.fail("facts")
    assert kinds(out) == ["turn.requested", "dispatch:llm"]
    user = out[0].data.messages[-1].content
    assert 'status="error"' in user and "could not be completed" in user


def test_message_during_a_run_joins_the_next_turn():
    run = Run()
    run.start()
    run.declare("a")
    assert run.message("also check b") == []
    run.end_turn("<action/>")
    out = run.complete("a", "A!")
    user = out[0].data.messages[-1].content
    assert user.endswith("also check b") and "A!" in user


def test_message_after_completion_reopens_the_chat_with_a_fresh_budget():
    run = Run(agent(max_iterations=1))
    run.start("hi")
    run.answer("Hello!")
    out = run.message("and now?")
    assert kinds(out) == ["turn.requested", "dispatch:llm"]
    roles = [(m.role, m.content) for m in out[0].data.messages]
    assert roles[1:] == [
        ("user", "hi"),
        ("assistant", '<response final="true">Hello!</response>'),
        ("user", "and now?"),
    ]
    assert run.answer("Later.")[0].data.response == "Later."


def test_message_to_a_failed_run_decides_nothing():
    run = Run(agent(max_iterations=0))
    run.start()
    assert run.message("hello?") == []


def test_facts_before_run_requested_are_ignored():
    run = Run()
    assert run.message("too early") == []
    assert run.end_turn("x", turn="t1") == []
    assert run.state.status == "new"


def test_decide_takes_the_state_with_the_event_folded_in():
    run = Run()
    event = run.event(RunRequested, RunRequestedData(agent=run.spec, message="x"))
    outputs = decide(evolve(run.state, event), event)
    assert kinds(outputs) == ["run.started", "turn.requested", "dispatch:llm"]
    assert decide(run.state, event) == []  # not folded: nothing to decide on


def test_emitted_timers_are_due_after_the_trigger_time():
    run = Run(agent(action_timeout_s=30))
    run.start()
    out = run.declare("a")
    timer = first(out, "timer.set")
    assert timer.data.due == out[0].time + timedelta(seconds=30)
    assert timer.time > T0


def test_turn_requested_is_folded_into_the_context():
    run = Run()
    run.start()
    assert run.state.messages == run.last(TurnRequested).data.messages
    assert run.state.inbox == ()


def test_an_action_lost_to_malformed_output_is_reported_instead_of_answering():
    run = Run()
    run.start()
    out = run.end_turn(
        '<action type="tool" name="search" id="a">{"q": </action>'
        '<response final="false">Looking it up.</response>'
    )
    assert kinds(out) == ["turn.requested", "dispatch:llm"]
    assert "problem in your output: invalid_json (action a)" in out[0].data.messages[-1].content


def test_the_agents_provider_options_travel_with_the_prompt_version():
    spec = msgspec.structs.replace(agent(), provider_options={"temperature": 0.2})
    out = Run(spec).start()
    assert out[1].data.provider_options == {"temperature": 0.2, "prompt_version": "v1"}
    assert (out[1].data.provider, out[1].data.model, out[1].data.max_tokens) == (
        "scripted",
        "m",
        1024,
    )


def test_a_later_turn_continues_the_run_s_action_numbering():
    run = Run()
    out = run.start()
    assert out[1].data.next_action_ordinal == 1
    run.declare("a1")
    run.declare("a2")
    run.declare("lookup")
    run.end_turn("")
    out = run.complete("a1") + run.complete("a2") + run.complete("lookup")
    request = next(o for o in out if isinstance(o, TurnRequested))
    assert request.data.next_action_ordinal == 3
