"""`cortex chat` as a subprocess: one run, one message.received per further line, answers printed."""

from __future__ import annotations

from cortex.bus.client import Bus
from tests.api.played_kernel import PlayedKernel
from tests.cli.conftest import cortex


async def test_each_line_goes_to_the_same_run_and_each_answer_is_printed(cli_env, bus: Bus,
                                                                       kernel: PlayedKernel) -> None:
    code, out, err = await cortex(cli_env, "chat", "echo", stdin=b"first\n\nref again\n/quit\nnever sent\n")
    assert code == 0, err
    assert "You said: first" in out and "The time is 12:00." in out and "$now" not in out
    assert "never sent" not in out
    run_id = err.split("run ", 1)[1].split()[0]
    events = (await bus.read_run(run_id)).events
    assert [e.data.message for e in events if e.type == "run.requested"] == ["first"]
    assert [e.data.text for e in events if e.type == "message.received"] == ["ref again"]
    assert kernel.answered == ["first", "ref again"]


async def test_end_of_input_leaves_and_a_failed_run_exits_1(cli_env, kernel: PlayedKernel) -> None:
    assert (await cortex(cli_env, "chat", "echo", stdin=b"hello\n"))[0] == 0
    code, out, _ = await cortex(cli_env, "chat", "echo", stdin=b"fail now\nnext\n")
    assert code == 1 and "scripted failure" in out
    assert kernel.answered == ["hello", "fail now"]


async def test_unknown_agent_is_a_usage_error(cli_env, kernel: PlayedKernel) -> None:
    code, _, err = await cortex(cli_env, "chat", "ghost", stdin=b"hi\n")
    assert code == 2 and "ghost" in err
