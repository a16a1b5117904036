"""Regenerate golden expectations: ``.venv/bin/python -m tests.protocol.regen [NAME ...]``.

Writes ``tests/protocol/golden/NAME.json`` from what the parser yields now for
``NAME.txt`` (merged deltas), keeping the file's ``options`` and ``note``. With no names, every
golden without a ``.json`` is written; ``--all`` rewrites them all. Review each diff by hand
(``git diff tests/protocol/golden``) before keeping it: the files are the specification.
"""

from __future__ import annotations

import argparse
import json

from tests.protocol.support import GOLDEN, encode_events, golden_names, load_golden, parse


def regenerate(name: str) -> None:
    """Rewrite one golden's expected events."""
    golden = load_golden(name)
    path = golden.expected_path
    doc = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    events = encode_events(parse(golden.text, **golden.options))
    out = {"note": doc.get("note", ""), "options": golden.options, "events": events}
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(GOLDEN.parent.parent.parent)} ({len(events)} events)")


def main() -> None:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("names", nargs="*", help="golden names (default: those without a .json)")
    ap.add_argument("--all", action="store_true", help="rewrite every golden")
    args = ap.parse_args()
    names = args.names or [
        n for n in golden_names() if args.all or not (GOLDEN / f"{n}.json").exists()
    ]
    for name in names:
        regenerate(name)


if __name__ == "__main__":
    main()
