"""Long fuzz run of the protocol parser (the test suite runs 100,000 inputs; this runs more).

Run from the repository root: ``.venv/bin/python bench/fuzz_parser.py [--inputs 1000000]``.
Inputs and invariants are those of ``tests/protocol/fuzzing.py``: random bytes, protocol token
soup and mutated golden transcripts, fed in random chunks (str or bytes, sometimes with tiny
limits) and checked for escaped exceptions, internal errors, bad offsets, duplicate action
ids and chunking dependence. Prints progress, throughput and any failing input; exits 1 if
an invariant broke.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.protocol import fuzzing  # noqa: E402


def main() -> int:
    """Run the fuzzer in batches and report."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--inputs", type=int, default=1_000_000, help="how many inputs to try")
    ap.add_argument("--seed", type=int, default=1000, help="first seed (one per batch)")
    ap.add_argument("--batch", type=int, default=50_000, help="inputs per seed")
    args = ap.parse_args()
    start = time.perf_counter()
    done = chars = 0
    failures: list[fuzzing.Failure] = []
    seed = args.seed
    while done < args.inputs:
        count = min(args.batch, args.inputs - done)
        batch_chars, batch_failures = fuzzing.run(seed, count)
        done += count
        chars += batch_chars
        failures += batch_failures
        elapsed = time.perf_counter() - start
        print(
            f"{done:>9,} inputs  {chars / 1e6:8.1f} M chars  {elapsed:7.1f} s  "
            f"{done / elapsed:7.0f} inputs/s  failures: {len(failures)}",
            flush=True,
        )
        seed += 1
    for failure in failures[:10]:
        print(f"FAIL {failure.problem} | options={failure.options} | {failure.data!r:.500}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
