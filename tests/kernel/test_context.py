"""The context of a turn: system prompt, history, results as <action_result> blocks, notes."""

from __future__ import annotations

from tests.kernel.helpers import Run, agent


def _second_turn_user(run: Run) -> str:
    return run.messages()[-1].content


def test_results_come_back_as_action_result_blocks_with_cdata():
    run = Run()
    run.start()
    run.declare("a")
    run.declare("b", "fetch")
    run.end_turn("<action/>")
    run.complete("a", {"hits": 2}, latency_ms=12.6)
    run.complete("b", "text with ]]> inside")
    assert _second_turn_user(run) == (
        '<action_result id="a" status="ok" latency_ms="13"><![CDATA[{"hits":2}]]></action_result>\n'
        '<action_result id="b" status="ok" latency_ms="5">'
        "<![CDATA[text with ]]]]><![CDATA[> inside]]></action_result>"
    )


def test_context_keeps_the_history_and_alternates_roles():
    run = Run()
    run.start("question")
    run.declare("a")
    run.end_turn("<action A/>")
    run.complete("a")
    run.declare("b")
    run.end_turn("<action B/>")
    run.complete("b")
    roles = [m.role for m in run.messages()]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert run.messages()[2].content == "<action A/>"


def test_long_results_are_truncated_to_the_limit():
    run = Run(agent(max_result_chars=10))
    run.start()
    run.declare("a")
    run.end_turn("<action/>")
    run.complete("a", "x" * 25)
    assert "xxxxxxxxxx... [15 more characters]" in _second_turn_user(run)


def test_a_sync_result_already_injected_into_the_output_is_not_repeated():
    run = Run()
    run.start()
    run.declare("s", mode="sync")
    run.declare("a")
    run.complete("s", "S")
    run.end_turn(
        '<action id="s"/><action_result id="s" status="ok">S</action_result><action id="a"/>'
    )
    run.complete("a", "A")
    user = _second_turn_user(run)
    assert '<action_result id="s"' not in user and '<action_result id="a"' in user


def test_only_the_last_turns_results_are_added():
    run = Run()
    run.start()
    run.declare("a")
    run.end_turn("<action/>")
    run.complete("a", "first")
    run.declare("b")
    run.end_turn("<action/>")
    run.complete("b", "second")
    last = _second_turn_user(run)
    assert "second" in last and "first" not in last


def test_the_system_prompt_is_rendered_once_and_kept():
    run = Run()
    run.start()
    system = run.messages()[0]
    assert (
        system.role == "system" and "You help." in system.content and "- search" in system.content
    )
    run.end_turn("")
    assert run.messages()[0] == system
