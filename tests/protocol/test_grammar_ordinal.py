"""Grammar ids continue the run's numbering, so a later turn never reuses an action id."""

from __future__ import annotations

import pytest

from cortex.errors import ConfigError
from cortex.kernel.protocol.grammar import protocol_grammar
from tests.protocol.gbnf import Grammar
from tests.protocol.test_grammar import FINAL, WEB, action


def test_ids_start_at_the_first_ordinal() -> None:
    grammar = Grammar(protocol_grammar(WEB, max_actions=1, first_ordinal=4))
    assert grammar.accepts(action(id="a4") + FINAL)
    assert not grammar.accepts(action(id="a1") + FINAL)
    assert not grammar.accepts(action(id="a4") + action(id="a5") + FINAL)


def test_resuming_counts_from_the_first_ordinal() -> None:
    prefix = action(id="a7") + "\n"
    grammar = Grammar(protocol_grammar(WEB, max_actions=2, first_ordinal=7, resume_from=prefix))
    assert grammar.accepts(action(id="a8") + FINAL)
    assert not grammar.accepts(action(id="a7") + FINAL)


def test_first_ordinal_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        protocol_grammar(WEB, first_ordinal=0)
