"""Sub-agents: run an ``agent`` action as a child run of the named agent, linked to its parent.

The pool loads the agent from the manifest store, requests the child run, follows it to its end
and completes the parent's action with the child's final response. Cancelling the parent's
action (or its run) cancels the child. See docs/pools.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from nats.aio.msg import Msg

from cortex.bus.client import Bus
from cortex.bus.events import RunCompleted, RunRequestedData
from cortex.bus.work import ActionWork, AnyWork
from cortex.errors import ManifestError
from cortex.manifests.store import ManifestStore
from cortex.workers.agent_child import fail_action, run_child
from cortex.workers.base import HandlerTasks, pool_consumer, serve_consumer, worker_id

log = logging.getLogger("cortex.workers.agent")

POOL = "agent"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cortex worker agent``."""
    parser.add_argument(
        "--concurrency", type=int, default=64,
        help="child runs followed at once (they mostly wait; default 64)",
    )


async def serve(bus: Bus, args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Run the pool until ``stop`` is set; child runs still followed are handed to another worker."""
    await AgentPool(bus).serve(stop, concurrency=args.concurrency)


def read_params(params: Any) -> tuple[str, dict[str, Any]]:
    """The child's first message and variables from the action's params (raises ValueError)."""
    if isinstance(params, str):
        return params, {}
    if not isinstance(params, dict) or not isinstance(params.get("message"), str):
        raise ValueError('params must be {"message": "...", "variables": {...}} or a string')
    variables = params.get("variables", {})
    if not isinstance(variables, dict):
        raise ValueError("params.variables must be an object")
    return params["message"], variables


class AgentPool:
    """One worker process of the agent pool."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.store = ManifestStore(bus)
        self.worker = worker_id(POOL)

    async def handle(self, item: AnyWork, msg: Msg) -> None:
        """Run one ``agent`` action to the end of its child run."""
        if not isinstance(item, ActionWork):
            log.error("agent pool got a %s work item; ignored", type(item).__name__)
            return
        try:
            message, variables = read_params(item.params)
        except ValueError as exc:
            await fail_action(self.bus, item, "invalid_params", str(exc))
            return
        try:
            agent = await self.store.get_agent(item.name)
        except ManifestError as exc:
            await fail_action(self.bus, item, "unknown_agent", f"unknown agent {item.name!r}: {exc}")
            return
        request = RunRequestedData(
            agent=agent, message=message, parent_run_id=item.run_id,
            parent_action_id=item.action_id, variables=variables,
        )
        await run_child(self.bus, item, msg, request, worker=self.worker, result=response_result)

    async def serve(self, stop: asyncio.Event, *, concurrency: int = 64) -> None:
        """Consume ``cortex.work.agent`` until ``stop`` is set."""
        tasks = HandlerTasks()
        consumer = pool_consumer(self.bus, POOL, tasks.wrap(self.handle), concurrency=concurrency)
        await serve_consumer(consumer, tasks, stop)


async def response_result(child: str, end: RunCompleted) -> dict[str, Any]:
    """The parent's result: the child's final response and its run id."""
    return {"response": end.data.response, "run_id": child}
