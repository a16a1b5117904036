"""Workflows: run a ``workflow`` action as a child run that replays the workflow's DAG as one turn.

The pool loads the workflow from the manifest store, checks the inputs against its schema and
requests a child run whose agent is the scripted provider replaying the rendered workflow
(``workflow_render``); the kernel runs the steps with its usual rules. The parent's action
completes with ``{"output": ..., "run_id": ...}``. See docs/pools.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

import jsonschema
import msgspec
from nats.aio.msg import Msg

from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.events import ActionCompleted, RunCompleted, RunRequestedData
from cortex.bus.work import ActionWork, AnyWork
from cortex.errors import ManifestError, UnresolvedReference
from cortex.kernel.protocol.refs import REFERENCE, resolve
from cortex.manifests.store import ManifestStore
from cortex.manifests.workflow import VARS, WorkflowSpec, find_tools, inputs_to_vars, tool_steps
from cortex.specs import ToolSpec
from cortex.workers.agent_child import fail_action, run_child
from cortex.workers.base import HandlerTasks, pool_consumer, serve_consumer, worker_id
from cortex.workers.workflow_render import workflow_agent, workflow_message

log = logging.getLogger("cortex.workers.workflow")

POOL = "workflow"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cortex worker workflow``."""
    parser.add_argument(
        "--concurrency", type=int, default=64,
        help="workflow runs followed at once (they mostly wait; default 64)",
    )


async def serve(bus: Bus, args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Run the pool until ``stop`` is set; workflows still followed are handed to another worker."""
    await WorkflowPool(bus).serve(stop, concurrency=args.concurrency)


def input_errors(spec: WorkflowSpec, inputs: Any) -> str | None:
    """Why ``inputs`` do not fit the workflow's inputs schema (None when they do)."""
    validator = jsonschema.validators.validator_for(spec.inputs)(spec.inputs)
    error = jsonschema.exceptions.best_match(validator.iter_errors(inputs))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    return f"inputs{'/' + where if where else ''}: {error.message}"


async def completed_results(bus: Bus, run_id: str) -> dict[str, Any]:
    """The results of a run's completed actions by action id (a later completion wins)."""
    results: dict[str, Any] = {}
    async for event, _seq in bus.read(subjects.run_event(run_id, "action.completed")):
        if isinstance(event, ActionCompleted):
            results[event.data.action_id] = event.data.result
    return results


async def workflow_output(bus: Bus, spec: WorkflowSpec, inputs: dict[str, Any], child: str, end: RunCompleted) -> Any:
    """The declared output: a single reference keeps its JSON type, a template is the kernel's text."""
    output = inputs_to_vars(spec.output.strip())
    reference = REFERENCE.fullmatch(output)
    if reference is None or not reference.group(1):
        return end.data.response
    results = await completed_results(bus, child)
    results[VARS] = inputs
    try:
        return resolve(output, results)
    except UnresolvedReference:  # the kernel filled it in, so this only happens if the log was trimmed
        return end.data.response


class WorkflowPool:
    """One worker process of the workflow pool."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.store = ManifestStore(bus)
        self.worker = worker_id(POOL)
        self._tools: dict[str, ToolSpec] = {}

    async def with_tools(self, spec: WorkflowSpec) -> WorkflowSpec:
        """``spec`` with a ToolSpec for every tool step: stored ones first, else built-in tools."""
        have = {tool.name for tool in spec.tools}
        missing = [name for name in tool_steps(spec.steps) if name not in have]
        unknown = [name for name in missing if name not in self._tools]
        if unknown:
            self._tools.update(await find_tools(unknown))
        extra = tuple(self._tools[name] for name in missing if name in self._tools)
        return msgspec.structs.replace(spec, tools=spec.tools + extra) if extra else spec

    async def handle(self, item: AnyWork, msg: Msg) -> None:
        """Run one ``workflow`` action to the end of its child run."""
        if not isinstance(item, ActionWork):
            log.error("workflow pool got a %s work item; ignored", type(item).__name__)
            return
        try:
            spec = await self.store.get("workflow", item.name, WorkflowSpec)
        except ManifestError as exc:
            await fail_action(self.bus, item, "unknown_workflow", f"unknown workflow {item.name!r}: {exc}")
            return
        try:
            spec = await self.with_tools(spec)
        except ManifestError as exc:
            await fail_action(self.bus, item, "tool_unavailable", f"workflow {spec.name}: {exc}")
            return
        inputs = {} if item.params is None else item.params
        problem = input_errors(spec, inputs)
        if problem is not None:
            await fail_action(self.bus, item, "invalid_params", f"workflow {spec.name}: {problem}")
            return
        request = RunRequestedData(
            agent=workflow_agent(spec), message=workflow_message(spec, inputs),
            parent_run_id=item.run_id, parent_action_id=item.action_id, variables=inputs,
        )

        async def result(child: str, end: RunCompleted) -> dict[str, Any]:
            """The parent's result: the workflow's output and the child run's id."""
            return {"output": await workflow_output(self.bus, spec, inputs, child, end), "run_id": child}

        await run_child(self.bus, item, msg, request, worker=self.worker, result=result)

    async def serve(self, stop: asyncio.Event, *, concurrency: int = 64) -> None:
        """Consume ``cortex.work.workflow`` until ``stop`` is set."""
        tasks = HandlerTasks()
        consumer = pool_consumer(self.bus, POOL, tasks.wrap(self.handle), concurrency=concurrency)
        await serve_consumer(consumer, tasks, stop)
