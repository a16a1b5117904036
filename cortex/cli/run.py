"""``cortex run AGENT "message"``: start a run and show it live (thoughts, the action tree, the response, usage)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import msgspec
from rich.console import Console
from rich.live import Live

from cortex.bus.client import Bus
from cortex.bus.events import Event, to_builtins
from cortex.cli.run_render import render, summary
from cortex.cli.run_view import RunView
from cortex.errors import ConfigError, ManifestError, NatsUnavailable
from cortex.runs import cancel_and_wait, cancel_run, follow_run, start_run

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130
CANCEL_GRACE_S = 10.0

def register(sub: argparse._SubParsersAction) -> None:
    """Add the run command."""
    run = sub.add_parser(
        "run", help="run an agent and watch it live",
        description="Start a run of an applied agent and show it live: the thought stream, the actions as a "
        "tree with their states and timings, the response stream and the usage. Exit code: 0 completed, "
        "1 failed (or timed out), 2 usage or configuration error, 130 cancelled (Ctrl-C cancels the run).",
    )
    run.add_argument("agent", help="name of an applied agent")
    run.add_argument("message", help="the first user message")
    run.add_argument("--json", action="store_true", help="print every event as one JSON line instead")
    run.add_argument("--timeout", type=float, default=None, help="cancel the run after this many seconds")
    run.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                     help="a run variable ($vars.NAME); VALUE is JSON or a plain string (repeatable)")
    run.set_defaults(func=cmd_run)


def parse_variables(pairs: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs into variables (VALUE parsed as JSON when it is JSON)."""
    variables: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"--var expects NAME=VALUE, not {pair!r}")
        try:
            variables[name] = json.loads(raw)
        except ValueError:
            variables[name] = raw
    return variables


def exit_code(view: RunView, *, timed_out: bool = False, interrupted: bool = False) -> int:
    """The process exit code for how the run ended."""
    if view.status == "completed":
        return EXIT_OK
    if view.status == "failed" or timed_out:
        return EXIT_FAILED
    if view.status == "cancelled" or interrupted:
        return EXIT_CANCELLED
    return EXIT_FAILED


def _now() -> datetime:
    return datetime.now(timezone.utc)


def json_line(event: Event) -> str:
    """One event as a JSON line (the envelope: ``type``, ``time``, ``id``, ``run_id``, ``data``, ...)."""
    return msgspec.json.encode(to_builtins(event)).decode()


class Follow:
    """Follow a run to its end, cancelling it on Ctrl-C (twice: give up) or after a timeout."""

    def __init__(self, bus: Bus, run_id: str, on_event: Callable[[Event], None], *,
                 start_seq: int | None = None) -> None:
        self.bus, self.run_id, self.on_event, self.start_seq = bus, run_id, on_event, start_seq
        self.interrupted = self.timed_out = False
        self._give_up = asyncio.Event()
        self._cancelling: asyncio.Task | None = None

    async def _consume(self) -> None:
        async with contextlib.aclosing(follow_run(self.bus, self.run_id, start_seq=self.start_seq)) as events:
            async for event in events:
                self.on_event(event)

    def _cancel(self, reason: str) -> None:
        asyncio.get_running_loop().call_later(CANCEL_GRACE_S, self._give_up.set)
        self._cancelling = asyncio.create_task(cancel_run(self.bus, self.run_id, reason))

    def _on_sigint(self) -> None:
        if self.interrupted:
            self._give_up.set()
            return
        self.interrupted = True
        self._cancel("interrupted by the user (Ctrl-C)")

    async def run(self, timeout_s: float | None) -> None:
        """Return when the run ended, or when giving up on it."""
        loop = asyncio.get_running_loop()
        follower = asyncio.create_task(self._consume())
        giving_up = asyncio.create_task(self._give_up.wait())
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, self._on_sigint)
        try:
            done, _ = await asyncio.wait({follower, giving_up}, timeout=timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                self.timed_out = True
                self._cancel(f"timed out after {timeout_s:g}s (cortex run --timeout)")
                await asyncio.wait({follower, giving_up}, return_when=asyncio.FIRST_COMPLETED)
            if follower.done():
                follower.result()
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
            giving_up.cancel()
            await cancel_and_wait(follower)
            if self._cancelling is not None:
                await asyncio.gather(self._cancelling, return_exceptions=True)


async def follow_live(bus: Bus, run_id: str, view: RunView, console: Console, timeout_s: float | None) -> Follow:
    """Follow the run with a rich Live display refreshed from the event loop (no thread touches the view)."""
    follow = Follow(bus, run_id, view.apply)
    with Live(render(view, _now()), console=console, auto_refresh=False, transient=False) as live:

        async def tick() -> None:
            while True:
                live.update(render(view, _now()), refresh=True)
                await asyncio.sleep(0.1)

        ticker = asyncio.create_task(tick())
        try:
            await follow.run(timeout_s)
        finally:
            ticker.cancel()
            live.update(render(view, _now()), refresh=True)
    if not console.is_terminal:
        console.line()  # rich ends the last frame with a newline on terminals only
    return follow


async def follow_json(bus: Bus, run_id: str, view: RunView, timeout_s: float | None) -> Follow:
    """Follow the run printing each event as a JSON line."""

    def emit(event: Event) -> None:
        view.apply(event)
        print(json_line(event), flush=True)

    follow = Follow(bus, run_id, emit)
    await follow.run(timeout_s)
    return follow


async def cmd_run(args: argparse.Namespace) -> int:
    """Start the run, follow it to its end, and exit with its outcome."""
    err = Console(stderr=True)
    try:
        variables = parse_variables(args.var)
        bus = await Bus.from_env(name="cortex-run")
    except (ConfigError, NatsUnavailable) as exc:
        err.print(f"cortex run: {exc}", style="red", markup=False, highlight=False)
        return EXIT_USAGE
    try:
        try:
            run_id = await start_run(bus, args.agent, args.message, variables=variables)
        except (ManifestError, ConfigError) as exc:
            err.print(f"cortex run: {exc}", style="red", markup=False, highlight=False)
            return EXIT_USAGE
        view = RunView()
        if args.json:
            follow = await follow_json(bus, run_id, view, args.timeout)
        else:
            console = Console()
            follow = await follow_live(bus, run_id, view, console, args.timeout)
            console.print(summary(view))
        if follow.timed_out:
            err.print(f"[red]cortex run: timed out after {args.timeout:g}s; the run was cancelled[/]")
        return exit_code(view, timed_out=follow.timed_out, interrupted=follow.interrupted)
    except BrokenPipeError:
        sys.stderr.close()
        return EXIT_FAILED
    finally:
        await bus.close()
