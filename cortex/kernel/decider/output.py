"""What the decider reads from a finished turn: ``turn.completed.output`` re-parsed by the Parser.

The decider reads the full raw output of ``turn.completed`` rather than ``response.delta``
events: it is one decision input (the service loop subscribes to nothing else from the llm
pool), and the parser is pure and chunking-independent, so re-parsing it gives the same
responses the worker streamed.
"""

from __future__ import annotations

from functools import lru_cache

import msgspec

from cortex.kernel.protocol import ParseError, Parser, ResponseDelta, codes


class TurnOutput(msgspec.Struct, frozen=True, kw_only=True):
    """A turn's output as the decider sees it."""

    final: str | None = None
    text: str = ""
    problems: tuple[str, ...] = ()


@lru_cache(maxsize=64)
def read_output(output: str) -> TurnOutput:
    """The final response (if any), other response text, and problems that lost an action.

    Output with no protocol markup at all (the model ignored the protocol) counts as
    response text, so a plain answer still ends the run.
    """
    parser = Parser(model_output=False)
    events = [*parser.feed(output), *parser.close()]
    final: list[str] = []
    text: list[str] = []
    problems: list[str] = []
    for event in events:
        if isinstance(event, ResponseDelta):
            (final if event.final else text).append(event.text)
        elif isinstance(event, ParseError) and event.code in codes.DROPS_ACTION:
            about = f" (action {event.action_id})" if event.action_id else ""
            problems.append(f"{event.code}{about}: {event.message}")
    if all(isinstance(e, ParseError) and e.code == codes.STRAY_TEXT for e in events):
        text = [output]
    return TurnOutput(
        final="".join(final).strip() if final else None,
        text="".join(text).strip(),
        problems=tuple(problems),
    )
