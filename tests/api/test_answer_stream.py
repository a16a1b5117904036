"""AnswerStream: which response text may be sent before the run completes (pure)."""

from __future__ import annotations

from hypothesis import given, strategies as st

from cortex.runs import AnswerStream


def test_final_deltas_stream_and_the_rest_comes_at_completion() -> None:
    answer = AnswerStream()
    assert answer.delta("t1", "Fetching...", final=False) == ""
    assert answer.delta("t1", "The answer ", final=True) == "The answer "
    assert answer.delta("t1", "is 42.", final=True) == "is 42."
    assert answer.completed("The answer is 42.") == ""


def test_text_from_a_reference_on_is_held_back_until_completion() -> None:
    answer = AnswerStream()
    assert answer.delta("t1", "Total: $sum.value", final=True) == "Total: "
    assert answer.delta("t1", " dollars", final=True) == ""
    assert answer.completed("Total: 12 dollars") == "12 dollars"


def test_a_rejected_final_response_is_followed_by_the_whole_answer() -> None:
    answer = AnswerStream()
    answer.delta("t1", "Using $missing", final=True)
    assert answer.delta("t2", "Sorry, ", final=True) == "Sorry, "
    rest = answer.completed("Sorry, no data.")
    assert rest == "\n\nSorry, no data."
    assert answer.sent == "Using Sorry, \n\nSorry, no data."


def test_an_answer_without_final_deltas_is_sent_whole() -> None:
    answer = AnswerStream()
    answer.delta("t1", "plain text", final=False)
    assert answer.completed("plain text") == "plain text"


@given(st.lists(st.text(alphabet="ab $.", max_size=8), max_size=6))
def test_whatever_the_chunking_the_pieces_add_up_to_the_answer(pieces: list[str]) -> None:
    raw = "".join(pieces)
    cut = raw.find("$")
    before = raw if cut < 0 else raw[:cut]
    response = before + raw[len(before):].replace("$", "X")  # the kernel substitutes from the first $ on
    answer = AnswerStream()
    sent = "".join(answer.delta("t1", piece, final=True) for piece in pieces)
    assert sent == before
    assert sent + answer.completed(response) == response
