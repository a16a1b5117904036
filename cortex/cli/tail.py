"""``cortex tail``: print events live, like ``nats sub``."""

from __future__ import annotations

import argparse
import sys

import msgspec

from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.events import Event, to_builtins


def register(sub: argparse._SubParsersAction) -> None:
    """Add the tail command."""
    tail = sub.add_parser(
        "tail",
        help="print events live (a run id or a subject filter)",
        description="Print events as they are published. TARGET is a run id (all its events), a "
        "subject filter such as 'cortex.evt.*.action.>' or nothing (every run event).",
    )
    tail.add_argument("target", nargs="?", help="run id or subject filter (default: cortex.evt.>)")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.add_argument("--all", action="store_true", help="start from the first stored event, not from now")
    tail.add_argument("--system", action="store_true", help="tail run-less events (cortex.sys.>) instead")
    tail.set_defaults(func=cmd_tail)


def format_line(event: Event) -> str:
    """One human line: time, type, run id and the compact data."""
    data = msgspec.json.encode(getattr(event, "data", None)).decode()
    if len(data) > 200:
        data = data[:197] + "..."
    return f"{event.time.strftime('%H:%M:%S.%f')[:-3]} {event.type:<18} {event.run_id or '-':<14} {data}"


async def cmd_tail(args: argparse.Namespace) -> int:
    """Follow events until interrupted."""
    if args.system:
        stream, filter_subject = subjects.SYSTEM_STREAM, args.target or subjects.SYSTEM_WILDCARD
    else:
        stream, filter_subject = subjects.EVENTS_STREAM, subjects.tail_filter(args.target)
    bus = await Bus.from_env(name="cortex-tail")
    try:
        async for event, _seq in bus.watch(filter_subject, stream=stream, from_start=args.all):
            if args.json:
                line = msgspec.json.encode(to_builtins(event)).decode()
            else:
                line = format_line(event)
            print(line, flush=True)
    except BrokenPipeError:
        sys.stderr.close()
    finally:
        await bus.close()
    return 0
