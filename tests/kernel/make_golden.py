"""Regenerate the golden replay log: ``python -m tests.kernel.make_golden`` (from the repo root).

Run it only after an intended change to the decider's rules, and review the diff of
tests/kernel/golden/replay_v1.jsonl before committing it.
"""

from __future__ import annotations

from tests.kernel.golden import GOLDEN, record


def main() -> None:
    """Write the golden log."""
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_bytes(b"\n".join(record()) + b"\n")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
