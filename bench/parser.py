"""Protocol parser throughput: realistic model output fed in small chunks (goal: 20 MB/s at 4).

Run: ``.venv/bin/python bench/parser.py [--mb 4] [--chunks 4,16,64] [--repeat 3] [--pure]``.
Prints MB/s (UTF-8 megabytes of input per CPU second, best of ``--repeat``) per chunk size, for
``str`` and for ``bytes`` chunks. CPU time (not wall time) keeps figures stable on a shared
machine; ``calibration`` (ms for ``sum(range(10**6))``) tells how fast this machine is.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if "--pure" in sys.argv:  # load the protocol package from its .py files, not the compiled build
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.protocol.pure_twin import SourceOnly

    sys.meta_path.insert(0, SourceOnly())

from cortex.kernel.protocol import ActionDeclared, Parser, ParseError
from cortex.kernel.protocol import parser as parser_module

_WORDS = (
    "the source says that results agree with earlier work on sparse attention and we "
    "should compare them carefully before answering; naïve café résumé — 数据 ✓ next "
    "step is to fetch"
).split()


def transcript(rng: random.Random, turns: int, first: int = 0) -> str:
    """Realistic model output: thoughts with 1-3 actions each, JSON bodies (30% with escaped
    quotes, backslashes, markup and a $reference; 20% in CDATA), interim and final responses,
    some non-ASCII text and entities."""
    parts: list[str] = []
    for t in range(first, first + turns):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(20, 80)))
        parts.append(f"<thought>{words}\n")
        for k in range(rng.randint(1, 3)):
            params = {
                "url": f"https://example.org/{t}/{k}?q=a&b=c",
                "query": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12))),
                "limit": rng.randint(1, 50),
                "filters": [{"field": "year", "gte": 2020}, {"field": "lang", "eq": "en"}],
            }
            if rng.random() < 0.3:  # escapes, markup and a reference in some of them
                params["text"] = f'quote "x" and <b>tags</b> \\ end $s{t}_{k}.body'
            body = json.dumps(params, ensure_ascii=False)
            if rng.random() < 0.2:
                body = f"<![CDATA[{body}]]>"
            mode = rng.choice(("sync", "async", "fire_and_forget"))
            parts.append(
                f'  <action type="tool" name="web.fetch" id="s{t}_{k}" mode="{mode}">'
                f"{body}</action>\n"
            )
        parts.append("</thought>\n")
        answer = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(10, 60)))
        final = "true" if t % 4 == 3 else "false"
        parts.append(f'<response final="{final}">{answer} &amp; done</response>\n')
    return "".join(parts)


def run(text: str, chunk: int, as_bytes: bool) -> tuple[float, int, int]:
    """Seconds to parse ``text`` in ``chunk``-sized pieces, actions seen, errors seen."""
    data: str | bytes = text.encode() if as_bytes else text
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    parser = Parser()
    seconds, actions, errors = feed_all(parser.feed, pieces)
    start = time.process_time()
    for event in parser.close():
        errors += isinstance(event, ParseError)
    return seconds + time.process_time() - start, actions, errors


def feed_all(feed: Callable[[Any], list[Any]], pieces: list[Any]) -> tuple[float, int, int]:
    """CPU seconds to feed every piece, counting actions and errors as a consumer would."""
    actions = errors = 0
    start = time.process_time()
    for piece in pieces:
        for event in feed(piece):
            if event.__class__ is ActionDeclared:
                actions += 1
            elif event.__class__ is ParseError:
                errors += 1
    return time.process_time() - start, actions, errors


def run_with(feed: Callable[[Any], list[Any]], text: str, chunk: int) -> float:
    """CPU seconds for ``feed`` to take ``text`` in ``chunk``-character pieces (bench/parser_floor)."""
    return feed_all(feed, [text[i : i + chunk] for i in range(0, len(text), chunk)])[0]


def calibration() -> float:
    """CPU seconds for ``sum(range(10**6))`` (best of 5): how fast this machine runs Python."""
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        sum(range(10**6))
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    """Measure and print throughput per chunk size."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=float, default=4.0, help="size of the transcript in MB")
    ap.add_argument("--chunks", default="4,16,64,1024", help="chunk sizes to measure")
    ap.add_argument("--repeat", type=int, default=3, help="runs per setting (best is kept)")
    ap.add_argument("--pure", action="store_true", help="run the .py source, not the compiled build")
    args = ap.parse_args()
    rng = random.Random(7)
    text = ""
    turns = 50
    while len(text.encode()) < args.mb * 1e6:
        text += transcript(rng, turns, first=len(text))
    size = len(text.encode())
    print(f"parser: {Path(parser_module.__file__).name}")
    print(f"transcript: {size / 1e6:.2f} MB UTF-8, {len(text):,} chars")
    print(f"calibration: sum(range(10**6)) takes {calibration() * 1e3:.1f} ms")
    for chunk in (int(c) for c in args.chunks.split(",")):
        for as_bytes in (False, True):
            best = min(run(text, chunk, as_bytes)[0] for _ in range(args.repeat))
            _, actions, errors = run(text, chunk, as_bytes)
            kind = "bytes" if as_bytes else "str"
            print(
                f"chunk {chunk:>5} {kind:>5}: {size / best / 1e6:7.2f} MB/s "
                f"({actions} actions, {errors} parse errors)"
            )


if __name__ == "__main__":
    main()
