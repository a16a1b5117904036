"""Read-side commands: ``cortex projections serve|rebuild``, ``cortex agents list``, ``cortex plugins list``,
``cortex runs list|show|replay``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import datetime, timezone
from typing import Any

import msgspec
from nats.errors import NoRespondersError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.events import to_builtins
from cortex.cli.read_views import progression_tree, run_summary, runs_table, short_time, status_text
from cortex.cli.tail import format_line
from cortex.errors import BusError, ConfigError, ManifestError
from cortex.manifests.store import ManifestStore
from cortex.projections.agents import define_agent
from cortex.projections.micro import start_service, subject
from cortex.projections.progressions import fold_progression
from cortex.projections.projector import Projector
from cortex.projections.queries import RUN_STATUSES, ProjectionQueries
from cortex.projections.replay import replay_run
from cortex.projections.runs import fold_run
from cortex.projections.store import plain

REBUILD_TIMEOUT_S = 600.0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the projections, agents, plugins and runs commands."""
    projections = sub.add_parser(
        "projections", help="run or rebuild the read models",
        description="The projections fold the event log into read models in KV (cortex_runs, "
        "cortex_progressions, cortex_agents, cortex_plugins) and answer queries as the NATS micro "
        "service cortex-projections (subjects cortex.q.*).",
    )
    commands = projections.add_subparsers(dest="action", metavar="ACTION", required=True)
    serve = commands.add_parser(
        "serve", help="run the projector and the query service until interrupted",
        description="Fold new events into the read models as they arrive and answer queries on "
        "cortex.q.* (runs.list, runs.get, progression.get, agents.list, plugins.list). Run one projector "
        "per deployment; start more with --queries-only to scale the queries.",
    )
    serve.add_argument("--queries-only", action="store_true", help="answer queries, do not run the projector")
    serve.set_defaults(func=cmd_serve)
    rebuild = commands.add_parser(
        "rebuild", help="purge the read models and fold the whole log again",
        description="Purge the read model buckets and fold every stored event again from the first one. "
        "A running `cortex projections serve` does it itself when asked; otherwise it is done here.",
    )
    rebuild.add_argument("--json", action="store_true", help="print the result as JSON")
    rebuild.set_defaults(func=cmd_rebuild)

    agents = sub.add_parser("agents", help="list agents", description="Agents: definitions and run counters.")
    agent_commands = agents.add_subparsers(dest="action", metavar="ACTION", required=True)
    agents_list = agent_commands.add_parser("list", help="list applied agents with their runs")
    agents_list.add_argument("--json", action="store_true", help="print JSON")
    agents_list.set_defaults(func=cmd_agents_list)

    plugins = sub.add_parser("plugins", help="list plugins", description="Plugins registered by tool workers.")
    plugin_commands = plugins.add_subparsers(dest="action", metavar="ACTION", required=True)
    plugins_list = plugin_commands.add_parser("list", help="list plugins, their tools and workers")
    plugins_list.add_argument("--json", action="store_true", help="print JSON")
    plugins_list.set_defaults(func=cmd_plugins_list)

    runs = sub.add_parser("runs", help="list, show and replay runs", description="Runs from the read models and the log.")
    run_commands = runs.add_subparsers(dest="action", metavar="ACTION", required=True)
    runs_list = run_commands.add_parser("list", help="the newest runs")
    runs_list.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    runs_list.add_argument("--agent", help="only runs of this agent")
    runs_list.add_argument("--status", choices=RUN_STATUSES, help="only runs in this status")
    runs_list.add_argument("--json", action="store_true", help="print JSON")
    runs_list.set_defaults(func=cmd_runs_list)
    show = run_commands.add_parser(
        "show", help="one run: summary and its steps as a tree",
        description="Show a run and its progression (turns, thoughts, actions with states and timings, "
        "responses). Read from the read models, or folded from the log if the projector has not seen it.",
    )
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true", help="print {run, progression} as JSON")
    show.set_defaults(func=cmd_runs_show)
    replay = run_commands.add_parser(
        "replay", help="print a run's events and check that the decider reproduces its decisions",
        description="Print every event of the run from the log in order, fold them through the kernel's "
        "decider and show the final state; exits 1 if a recorded decision is not reproduced exactly.",
    )
    replay.add_argument("run_id")
    replay.add_argument("--json", action="store_true", help="one JSON object per event, then the report")
    replay.set_defaults(func=cmd_runs_replay)


def print_json(value: Any) -> None:
    """Print a JSON document (datetimes as RFC 3339)."""
    print(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


async def _connected(name: str) -> Bus:
    bus = await Bus.from_env(name=name)
    await bus.provision()
    return bus


# ---- projections ---------------------------------------------------------------------


async def cmd_serve(args: argparse.Namespace) -> int:
    """Run the projector (unless --queries-only) and the micro service until SIGINT/SIGTERM."""
    bus = await _connected("cortex-projections")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    projector = None if args.queries_only else Projector(bus)
    service = await start_service(bus, projector)
    what = "queries" if projector is None else "projector and queries"
    print(f"cortex-projections: {what} on {bus.url} (subjects cortex.q.*)", file=sys.stderr, flush=True)
    try:
        if projector is None:
            await stop.wait()
        else:
            await projector.run(stop)
    finally:
        await service.stop()
        await bus.close()
    return 0


async def cmd_rebuild(args: argparse.Namespace) -> int:
    """Ask the running projector to rebuild, or rebuild here if none answers."""
    bus = await _connected("cortex-rebuild")
    try:
        try:
            reply = await bus.nc.request(subject("projections.rebuild"), b"{}", timeout=REBUILD_TIMEOUT_S)
            if reply.headers and "Nats-Service-Error" in reply.headers:
                raise BusError(f"the running projector could not rebuild: {reply.headers['Nats-Service-Error']}")
            folded, where = msgspec.json.decode(reply.data)["folded"], "by the running projector"
        except NoRespondersError:
            projector = Projector(bus)
            folded, where = await projector.rebuild(), "here (no projector was running)"
            await projector.close()
    finally:
        await bus.close()
    if args.json:
        print_json({"folded": folded, "where": where})
    else:
        Console(highlight=False).print(f"[green]✓[/] read models rebuilt {where}: {folded} messages folded")
    return 0


# ---- agents and plugins --------------------------------------------------------------


async def agents_with_definitions(bus: Bus) -> list[dict[str, Any]]:
    """The agents model, plus applied agents the projector has not seen yet (so it works without one)."""
    agents = {a["name"]: a for a in await ProjectionQueries(bus).list_agents()}
    store = ManifestStore(bus)
    for name in await store.names("agent"):
        if name in agents:
            continue
        try:
            spec = await store.get("agent", name, dict)
        except ManifestError:
            continue
        item = plain(define_agent(None, name, spec, 0))
        item["active"] = 0
        agents[name] = item
    return [agents[name] for name in sorted(agents)]


async def cmd_agents_list(args: argparse.Namespace) -> int:
    """Print the agents."""
    bus = await _connected("cortex-agents")
    try:
        agents = await agents_with_definitions(bus)
    finally:
        await bus.close()
    if args.json:
        print_json(agents)
        return 0
    table = Table("agent", "model", "tools", "sub-agents", "active", "runs", "last run", box=None)
    for a in agents:
        last = "-"
        if a.get("last_run_id"):
            last = f"{escape(a['last_run_id'])} {status_text(a.get('last_run_status') or '?')} {short_time(a.get('last_run_at'))}"
        name = escape(a["name"]) + ("" if a.get("defined") else " [dim](not applied)[/]")
        model = f"{escape(a.get('provider') or '?')}/{escape(a.get('model') or '-')}"
        table.add_row(name, model, str(len(a.get("tools", []))), ", ".join(a.get("agents", [])) or "-",
                      str(a.get("active", 0)), str(a.get("total_runs", 0)), last)
    _print_or_empty(table, agents, "no agents: apply some with `cortex apply PATH`")
    return 0


async def cmd_plugins_list(args: argparse.Namespace) -> int:
    """Print the plugins and their workers."""
    bus = await _connected("cortex-plugins")
    try:
        plugins = await ProjectionQueries(bus).list_plugins(datetime.now(timezone.utc))
    finally:
        await bus.close()
    if args.json:
        print_json(plugins)
        return 0
    table = Table("plugin", "version", "status", "tools", "workers", "last heartbeat", box=None)
    styles = {"live": "green", "stale": "yellow", "stopped": "dim"}
    for p in plugins:
        workers = p.get("workers", {})
        beats = [w.get("last_heartbeat") for w in workers.values() if w.get("last_heartbeat")]
        counts = ", ".join(
            f"{sum(1 for w in workers.values() if w['status'] == s)} {s}"
            for s in ("live", "stale", "stopped") if any(w["status"] == s for w in workers.values())
        )
        table.add_row(
            escape(p["name"]), escape(p.get("version") or "-"), f"[{styles[p['status']]}]{p['status']}[/]",
            ", ".join(t["name"] for t in p.get("tools", [])) or "-", counts or "-", short_time(max(beats, default=None)),
        )
    _print_or_empty(table, plugins, "no plugins registered: start a tool worker with `cortex worker tool`")
    return 0


def _print_or_empty(table: Table, rows: list[Any], empty: str) -> None:
    console = Console(highlight=False)
    console.print(table if rows else f"[dim]{empty}[/]")


# ---- runs ----------------------------------------------------------------------------


async def cmd_runs_list(args: argparse.Namespace) -> int:
    """Print the newest runs."""
    bus = await _connected("cortex-runs")
    try:
        runs = await ProjectionQueries(bus).list_runs(limit=args.limit, agent=args.agent, status=args.status)
    finally:
        await bus.close()
    if args.json:
        print_json(runs)
    else:
        _print_or_empty(runs_table(runs), runs, "no runs yet")
    return 0


async def run_views(bus: Bus, run_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(run, progression) from the read models, or folded from the log when the projector has not seen the run."""
    queries = ProjectionQueries(bus)
    run, progression = await queries.get_run(run_id), await queries.get_progression(run_id)
    if run is not None:
        return run, progression
    run_view = progression_view = None
    async for event, seq in bus.read(subjects.run_events(run_id)):
        run_view = fold_run(run_view, event, seq)
        progression_view = fold_progression(progression_view, event, seq)
    return (
        None if run_view is None else plain(run_view),
        None if progression_view is None else plain(progression_view),
    )


async def cmd_runs_show(args: argparse.Namespace) -> int:
    """Print one run and its steps."""
    bus = await _connected("cortex-runs")
    try:
        run, progression = await run_views(bus, args.run_id)
    finally:
        await bus.close()
    if run is None:
        raise ConfigError(f"no run {args.run_id!r}: nothing in the read models or the log")
    if args.json:
        print_json({"run": run, "progression": progression})
        return 0
    console = Console(highlight=False)
    console.print(run_summary(run))
    console.print(progression_tree(args.run_id, progression, width=max(40, console.width - 30)))
    return 0


async def cmd_runs_replay(args: argparse.Namespace) -> int:
    """Print the run's events, fold them through the decider and report whether its decisions are reproduced."""
    bus = await _connected("cortex-replay")
    try:
        history = await bus.read_run(args.run_id)
    finally:
        await bus.close()
    if not history.events:
        raise ConfigError(f"no events for run {args.run_id!r} in the log")
    report = replay_run(history.events)
    state = report.state
    summary = {
        "type": "replay.report",
        "run_id": args.run_id,
        "ok": report.ok,
        "events": len(history.events),
        "inputs": report.inputs,
        "decisions": report.recorded,
        "reproduced": report.reproduced,
        "problems": report.problems(),
        "status": state.status,
        "turns": len(state.turns),
        "actions": {a.action_id: a.status for a in state.actions.values()},
        "usage": msgspec.to_builtins(state.usage),
    }
    if args.json:
        for event in history.events:
            print(msgspec.json.encode(to_builtins(event)).decode())
        print(msgspec.json.encode(summary).decode())
        return 0 if report.ok else 1
    console = Console(highlight=False)
    for event in history.events:
        console.print(escape(format_line(event)), soft_wrap=True)
    console.print()
    console.print(
        f"final state: {status_text(state.status)}, {len(state.turns)} turns, {len(state.actions)} actions, "
        f"{state.usage.prompt_tokens}+{state.usage.completion_tokens} tokens"
    )
    for action in state.actions.values():
        console.print(f"  {escape(action.action_id)} {escape(action.type)} {escape(action.name)}: {escape(action.status)}")
    if report.ok:
        console.print(f"[green]✓[/] {report.reproduced} of {report.recorded} recorded decisions reproduced exactly "
                      f"from {report.inputs} inputs")
        return 0
    console.print(f"[red]✗ the decider does not reproduce the log[/] ({report.reproduced} of {report.recorded} match):")
    for line in report.problems():
        console.print(f"  [red]{escape(line)}[/]")
    return 1
