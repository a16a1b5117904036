"""Fuzzing: 100,000 random and mutated inputs, randomly re-chunked, break no invariant.

See tests/protocol/fuzzing.py for the inputs and invariants, and bench/fuzz_parser.py for
the longer run (1,000,000 inputs).
"""

from __future__ import annotations

import pytest

from tests.protocol import fuzzing

RUNS = 4
PER_RUN = 25_000  # 100,000 inputs in all


@pytest.mark.parametrize("seed", range(RUNS))
def test_fuzzed_inputs_keep_every_invariant(seed: int) -> None:
    chars, failures = fuzzing.run(seed, PER_RUN)
    assert chars > PER_RUN * 50  # the inputs are not trivially small
    report = [f"{f.problem} | options={f.options} | input={f.data!r:.300}" for f in failures[:5]]
    assert not failures, f"{len(failures)} failing inputs, first ones:\n" + "\n".join(report)
