"""``cortex worker POOL``: run one worker process of a pool (llm, tool, agent, workflow, relic)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal

from cortex.bus.client import Bus

# pool -> module implementing ``add_arguments(parser)`` and ``async serve(bus, args, stop)``
POOL_MODULES = {
    "llm": "cortex.workers.llm_pool",
    "tool": "cortex.workers.tool_pool",
    "agent": "cortex.workers.agent_pool",
    "workflow": "cortex.workers.workflow_pool",
    "relic": "cortex.workers.relic_pool",
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``cortex worker <pool>`` for each pool whose module is present."""
    worker = sub.add_parser(
        "worker", help="run a worker process of a pool",
        description="Run one worker process that pulls work from cortex.work.<pool>. Start more "
        "processes of the same pool to scale out: they share one durable consumer.",
    )
    pools = worker.add_subparsers(dest="pool", metavar="POOL", required=True)
    for pool, module_name in POOL_MODULES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        parser = pools.add_parser(pool, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(parser)
        parser.set_defaults(func=run_worker, serve=module.serve)


async def run_worker(args: argparse.Namespace) -> int:
    """Connect, provision and serve until SIGINT/SIGTERM."""
    bus = await Bus.from_env(name=f"cortex-worker-{args.pool}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await bus.provision()
        await args.serve(bus, args, stop)
    finally:
        await bus.close()
    return 0
