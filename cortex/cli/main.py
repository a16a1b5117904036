"""Entry point of the ``cortex`` command: builds the parser from the command modules and runs one."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys

from cortex import __version__
from cortex.errors import CortexError

# Each module defines ``register(subparsers)`` adding its commands; a command sets
# ``func`` (an async function taking the parsed args and returning an exit code).
COMMAND_MODULES = (
    "cortex.cli.server",
    "cortex.cli.tail",
    "cortex.cli.demo",
    "cortex.cli.worker",
    "cortex.cli.kernel",
    "cortex.cli.run",
    "cortex.cli.chat",
    "cortex.cli.api",
    "cortex.cli.manifests",
    "cortex.cli.projections",
)


def build_parser() -> argparse.ArgumentParser:
    """The full ``cortex`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="cortex",
        description="Cortex: an event-sourced runtime for LLM agents on NATS JetStream.",
        epilog="Set CORTEX_NATS_URL to use an external NATS server or cluster; "
        "CORTEX_HOME (default ~/.cortex) holds the embedded server's data and logs.",
    )
    parser.add_argument("--version", action="version", version=f"cortex {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``cortex`` command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return asyncio.run(args.func(args)) or 0
    except CortexError as exc:
        print(f"cortex: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
