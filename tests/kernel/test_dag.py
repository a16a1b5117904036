"""The DAG: depends_on plus $id references, waiting, resolution, cycles and unknown ids."""

from __future__ import annotations

from tests.kernel.helpers import Run, decisions, first, kinds


def test_an_action_with_unmet_dependencies_waits_on_them():
    run = Run()
    run.start()
    run.declare("a")
    out = run.declare("b", depends_on=("a",))
    assert kinds(out) == ["action.waiting"]
    assert out[0].data.reason == "waiting_on_dependencies"
    assert out[0].data.waiting_on == ("a",)


def test_a_reference_is_a_dependency_too():
    run = Run()
    run.start()
    run.declare("a")
    out = run.declare("b", "fetch", {"url": "$a.url"})
    assert out[0].data.waiting_on == ("a",)


def test_dependents_are_scheduled_when_their_dependencies_complete():
    run = Run()
    run.start()
    run.declare("a")
    run.declare("b")
    run.declare("c", "fetch", {}, depends_on=("a", "b"))
    assert run.complete("a") == []
    out = run.complete("b")
    assert decisions(out)[0] == ("action.scheduled", "c", "dependencies_met")
    assert out[0].data.detail == "dependencies met: $a, $b"


def test_references_resolve_into_the_dispatched_params():
    run = Run()
    run.start()
    run.declare("a")
    run.declare(
        "b", "fetch", {"url": "$a.hits[0].url", "all": "$a", "note": "from $a.hits[0].url!"}
    )
    out = run.complete("a", {"hits": [{"url": "https://nats.io"}]})
    params = first(out, "dispatch:tool").item.params
    assert params == {
        "url": "https://nats.io",
        "all": {"hits": [{"url": "https://nats.io"}]},
        "note": "from https://nats.io!",
    }


def test_a_reference_to_a_missing_path_is_denied():
    run = Run()
    run.start()
    run.declare("a")
    run.declare("b", "fetch", {"url": "$a.nope"})
    out = run.complete("a", {"url": "x"})
    assert decisions(out)[0] == ("action.denied", "b", "unresolved_reference")
    assert "$a.nope" in out[0].data.detail


def test_resolved_params_are_validated_against_the_schema():
    run = Run()
    run.start()
    run.declare("a")
    run.declare("b", "search", {"q": "$a"})
    out = run.complete("a", {"not": "a string"})
    assert decisions(out)[0] == ("action.denied", "b", "invalid_params")


def test_a_failed_dependency_fails_its_dependents_transitively():
    run = Run()
    run.start()
    run.declare("a")
    run.declare("b", depends_on=("a",))
    run.declare("c", depends_on=("b",))
    out = run.fail("a")
    assert decisions(out) == [
        ("action.failed", "b", "dependency_failed"),
        ("action.failed", "c", "dependency_failed"),
    ]
    assert out[0].data.error == "depends on $a, which failed"


def test_depending_on_an_already_failed_action_fails_at_once():
    run = Run()
    run.start()
    run.declare("a", "teleport", {})
    out = run.declare("b", depends_on=("a",))
    assert decisions(out) == [("action.failed", "b", "dependency_failed")]


def test_a_self_dependency_is_a_cycle():
    run = Run()
    run.start()
    out = run.declare("a", depends_on=("a",))
    assert decisions(out)[0] == ("action.denied", "a", "dependency_cycle")


def test_a_cycle_through_a_forward_reference_is_denied_and_fails_the_other_side():
    run = Run()
    run.start()
    assert kinds(run.declare("a", depends_on=("b",))) == ["action.waiting"]
    out = run.declare("b", depends_on=("a",))
    assert decisions(out) == [
        ("action.denied", "b", "dependency_cycle"),
        ("action.failed", "b", "dependency_cycle"),
        ("action.failed", "a", "dependency_failed"),
    ]


def test_a_forward_reference_declared_later_in_the_turn_is_fine():
    run = Run()
    run.start()
    run.declare("b", depends_on=("a",))
    out = run.declare("a")
    assert decisions(out)[0] == ("action.scheduled", "a", "dependencies_met")
    out = run.complete("a")
    assert decisions(out)[0] == ("action.scheduled", "b", "dependencies_met")


def test_an_id_never_declared_in_the_turn_is_denied_when_the_turn_ends():
    run = Run()
    run.start()
    run.declare("b", depends_on=("ghost",))
    out = run.end_turn("<action/>")
    assert decisions(out) == [
        ("action.denied", "b", "unknown_dependency"),
        ("action.failed", "b", "unknown_dependency"),
    ]
    assert kinds(out)[-2:] == ["turn.requested", "dispatch:llm"]


def test_references_reach_results_of_earlier_turns():
    run = Run()
    run.start()
    run.declare("a")
    run.end_turn("<action/>")
    run.complete("a", {"n": 1})
    out = run.declare("b", "fetch", {"n": "$a.n"})
    assert first(out, "dispatch:tool").item.params == {"n": 1}


def test_internal_set_stores_a_variable_readable_as_vars():
    run = Run()
    run.start(city="Oslo")
    out = run.declare("v", "set", {"name": "unit", "value": "C"}, type="internal")
    assert kinds(out) == ["action.scheduled", "action.completed"]
    assert out[0].data.pool == "internal"
    out = run.declare("w", "fetch", {"q": "$vars.city in $vars.unit"})
    assert first(out, "dispatch:tool").item.params == {"q": "Oslo in C"}


def test_internal_set_waits_for_its_references_like_any_action():
    run = Run()
    run.start()
    run.declare("a")
    assert kinds(run.declare("v", "set", {"name": "x", "value": "$a"}, type="internal")) == [
        "action.waiting"
    ]
    run.complete("a", 7)
    assert run.state.variables == {"x": 7}
