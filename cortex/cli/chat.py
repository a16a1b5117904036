"""``cortex chat AGENT``: a multi-turn conversation in one run (each further line is a ``message.received``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading

from rich.console import Console

from cortex.bus.client import Bus
from cortex.bus.events import Event
from cortex.cli.run import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, EXIT_USAGE, Follow
from cortex.cli.run_view import RunView
from cortex.errors import ConfigError, ManifestError, NatsUnavailable
from cortex.runs import AnswerStream, send_message, start_run

QUIT = ("/quit", "/exit")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the chat command."""
    chat = sub.add_parser(
        "chat", help="chat with an agent (multi-turn)",
        description="Chat with an applied agent: the first line starts a run, every further line is sent to "
        "the same run. The answer streams as it is written; actions show as one line each. /quit or end of "
        "input leaves (exit 0). Ctrl-C during an answer cancels the run (exit 130); a failed run exits 1.",
    )
    chat.add_argument("agent", help="name of an applied agent")
    chat.set_defaults(func=cmd_chat)


def stdin_lines(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[str | None]:
    """Lines of stdin in a queue, read by a daemon thread (None at end of input), so Ctrl-C never waits on it."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\n"))
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, name="cortex-chat-stdin", daemon=True).start()
    return queue


class AnswerPrinter:
    """Print one answer as it streams: action lines (dim) and the answer text."""

    def __init__(self, console: Console) -> None:
        self.console, self.view, self.answer = console, RunView(), AnswerStream()

    def __call__(self, event: Event) -> None:
        """Fold the event and print what it adds."""
        self.view.apply(event)
        if event.type == "response.delta":
            self._text(self.answer.delta(event.data.turn_id, event.data.text, event.data.final))
        elif event.type == "run.completed":
            self._text(self.answer.completed(event.data.response))
            self.console.print()
        elif event.type in ("action.declared", "action.completed", "action.failed", "action.cancelled"):
            action = self.view.action(event.data.action_id)
            if action is not None:
                self._break_line()
                self.console.print(f"  · {action.action_id} {action.type} {action.name}: {action.label}",
                                   style="dim", markup=False, highlight=False)
        elif event.type in ("run.failed", "run.cancelled"):
            self._break_line()
            self.console.print(f"run {self.view.status}: {self.view.error}", style="red", markup=False)

    def _text(self, text: str) -> None:
        if text:
            self.console.print(text, end="", markup=False, highlight=False, soft_wrap=True)

    def _break_line(self) -> None:
        if self.answer.sent and not self.answer.sent.endswith("\n"):
            self.console.print()
            self.answer.sent += "\n"


async def cmd_chat(args: argparse.Namespace) -> int:
    """Read lines, send them to one run, print each answer; exit 0 on /quit or end of input."""
    console, err = Console(), Console(stderr=True)
    interactive = sys.stdin.isatty()
    try:
        bus = await Bus.from_env(name="cortex-chat")
    except NatsUnavailable as exc:
        err.print(f"cortex chat: {exc}", style="red", markup=False, highlight=False)
        return EXIT_USAGE
    lines = stdin_lines(asyncio.get_running_loop())
    run_id: str | None = None
    try:
        while True:
            if interactive:
                console.print("[bold]you>[/] ", end="")
            line = await lines.get()
            if line is None or line.strip() in QUIT:
                return EXIT_OK
            if not line.strip():
                continue
            if run_id is None:
                try:
                    run_id = await start_run(bus, args.agent, line)
                except (ManifestError, ConfigError) as exc:
                    err.print(f"cortex chat: {exc}", style="red", markup=False, highlight=False)
                    return EXIT_USAGE
                err.print(f"[dim]run {run_id}[/]")
                start_seq = None
            else:
                start_seq = await send_message(bus, run_id, line) + 1
            printer = AnswerPrinter(console)
            follow = Follow(bus, run_id, printer, start_seq=start_seq)
            await follow.run(None)
            if printer.view.status == "failed":
                return EXIT_FAILED
            if printer.view.status != "completed":
                return EXIT_CANCELLED
    finally:
        await bus.close()
