"""``cortex kernel``: run one kernel process (start more of them to scale out)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from cortex.bus.client import Bus
from cortex.errors import ConfigError
from cortex.kernel.service import Kernel

DESCRIPTION = """\
Run one kernel process: it pulls the decision inputs of every run (run.requested,
message.received, cancel.requested, turn.completed|failed, action.declared|completed|failed|
cancelled, timer.fired), decides each with the pure decider, dispatches work to the pools and
publishes the decisions as events, with deterministic ids and per-run optimistic concurrency.
The inputs are copied into the stream CORTEX_KERNEL in 16 partitions by run (durable consumers
kernel-p00..kernel-p15); kernels share the partitions through leases in the KV bucket
cortex_kernel_leases, so a run's inputs reach one kernel in order. It also fires due timers
(durable consumer "kernel-timers"). Any number of kernels can run at once (beyond 16 they stand
by), and a kernel that dies loses nothing: its partitions pass to the others after 5 s, its
inputs in hand are redelivered, run states are rebuilt from the log. Stop with SIGINT/SIGTERM:
the inputs in hand are finished first and the partitions handed over. See docs/kernel.md.
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``cortex kernel``."""
    kernel = sub.add_parser(
        "kernel", help="run a kernel process (decides every run's next step)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kernel.add_argument(
        "--cache-size", type=int, default=10_000, metavar="RUNS",
        help="run states kept in memory (least recently used dropped first; a miss re-reads the "
        "run's events from the log) (default 10000)",
    )
    kernel.add_argument(
        "--concurrency", type=int, default=64, metavar="N",
        help="inputs decided at once; inputs of one run are always decided one at a time (default 64)",
    )
    kernel.add_argument(
        "--ack-wait", type=float, default=30.0, metavar="SECONDS",
        help="how long an input taken by a kernel that died waits before another kernel gets it "
        "(default 30)",
    )
    kernel.set_defaults(func=run_kernel)


async def run_kernel(args: argparse.Namespace) -> int:
    """Connect, provision and decide until SIGINT/SIGTERM; print the counters on exit."""
    if args.cache_size < 1 or args.concurrency < 1 or args.ack_wait <= 0:
        raise ConfigError("--cache-size and --concurrency must be at least 1, --ack-wait above 0")
    bus = await Bus.from_env(name="cortex-kernel")
    kernel = Kernel(bus, cache_size=args.cache_size, concurrency=args.concurrency, ack_wait_s=args.ack_wait)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, kernel.stop)
    try:
        await bus.provision()
        task = asyncio.create_task(kernel.run())
        ready = asyncio.create_task(kernel.ready.wait())
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if kernel.ready.is_set():
            print(f"cortex kernel: deciding on {bus.url}", flush=True)
        await task
    finally:
        await bus.close()
    print(f"cortex kernel: stopped {json.dumps(kernel.stats.as_dict())}", file=sys.stderr, flush=True)
    return 0
