"""One tool action: the redelivery checks, its events, keep-alive, cancellation and error codes.

For each ``ActionWork`` item: unless it is a fresh first delivery (see ``ToolExecutor._record``),
read the run's ``action.*`` events; an attempt that already ended is acknowledged and not run;
one a crashed worker had started runs again only if its tool is idempotent, else it fails with
``outcome_unknown``. Otherwise ``action.started``, any ``action.progress``, then
``action.completed`` or ``action.failed``. Event ids derive from the dispatch (the work item's
``causation_id``, its ``action.scheduled`` event), so a re-publish after a crash is deduplicated
and an action id reused in a later turn gets new ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, TypeVar

from nats.aio.msg import Msg

from cortex.adapters.tools import CallContext
from cortex.bus.acked import Batch
from cortex.bus.client import Bus
from cortex.bus.events import (
    ActionCompleted,
    ActionCompletedData,
    ActionFailed,
    ActionFailedData,
    ActionProgress,
    ActionProgressData,
    ActionStarted,
    ActionStartedData,
    Event,
)
from cortex.bus.work import ActionWork, AnyWork
from cortex.errors import DockerUnavailable, OutcomeUnknown, SandboxError, ToolError, ToolTimeout
from cortex.workers.action_log import ActionLog, AttemptRecord
from cortex.workers.base import keep_alive, make_event
from cortex.workers.cancel_watch import CancelWatch
from cortex.workers.plugin_host import PluginHost, Route

log = logging.getLogger("cortex.workers.tool")

E = TypeVar("E", bound=Event)

# what ``ToolExecutor.execute`` did with a work item
COMPLETED = "completed"
FAILED = "failed"
SKIPPED = "skipped"
STOPPED = "stopped"

OUTCOME_UNKNOWN_MESSAGE = (
    "outcome unknown: the worker running it stopped before reporting; "
    "not run twice because the tool is not idempotent"
)

# ToolError subclasses and their codes, most specific first
ERROR_CODES: tuple[tuple[type[ToolError], str], ...] = (
    (ToolTimeout, "timeout"),
    (OutcomeUnknown, "outcome_unknown"),
    (DockerUnavailable, "docker_unavailable"),
    (SandboxError, "sandbox_error"),
    (ToolError, "tool_error"),
)


def failure(exc: BaseException, *, idempotent: bool) -> tuple[str, str, bool]:
    """(code, message, retryable) of a failed call; timeouts and sandbox trouble retry if idempotent."""
    for cls, code in ERROR_CODES:
        if isinstance(exc, cls):
            transient = isinstance(exc, (ToolTimeout, SandboxError))
            return code, str(exc) or cls.__name__, transient and idempotent
    return "internal_error", f"{type(exc).__name__}: {exc}", False


def action_event(cls: type[E], work: ActionWork, data: Any, suffix: str) -> E:
    """An event of ``work``'s attempt with id ``<causation_id>:<action_id>:<attempt>:<suffix>``."""
    return make_event(cls, work, data, event_id=f"{work.causation_id}:{work.action_id}:{work.attempt}:{suffix}")


class ToolExecutor:
    """Runs tool actions against a ``PluginHost`` and publishes their events."""

    def __init__(
        self, bus: Bus, host: PluginHost, actions: ActionLog, cancels: CancelWatch, *,
        worker: str, keep_alive_s: float = 5.0, started_delay_s: float = 0.002,
    ) -> None:
        self.bus = bus
        self.host = host
        self.actions = actions
        self.cancels = cancels
        self.worker = worker
        self.keep_alive_s = keep_alive_s
        self.started_delay_s = started_delay_s

    async def handle(self, item: AnyWork, msg: Msg) -> None:
        """The pool consumer's handler: run one work item (the consumer acks it afterwards)."""
        if not isinstance(item, ActionWork):
            log.error("tool pool got a %s work item; ignored", type(item).__name__)
            return
        await self.execute(item, msg)

    async def execute(self, work: ActionWork, msg: Msg) -> str:
        """Run ``work`` unless the log says not to; return COMPLETED, FAILED, SKIPPED or STOPPED."""
        with self.cancels.watch(work) as stopped:
            record = await self._record(work, msg)
            if (record is not None and record.outcome is not None) or stopped.done():
                reason = record.outcome if record is not None and record.outcome else stopped.result()
                log.info("%s: not run, already ended (%s)", _name(work), reason)
                return SKIPPED
            if work.type != "tool":
                message = f"the tool pool runs tool actions, not {work.type!r}"
                return await self._fail(work, "unsupported_action_type", message)
            route = self.host.route(work.name)
            if route is None:
                served = ", ".join(s.name for s in self.host.tools) or "none"
                message = f"no plugin on this worker offers {work.name!r} (tools: {served})"
                return await self._fail(work, "unknown_tool", message)
            idempotent = route.spec.idempotent and (work.tool is None or work.tool.idempotent)
            if record is not None and record.started and not idempotent:
                return await self._fail(work, "outcome_unknown", OUTCOME_UNKNOWN_MESSAGE)
            params = {} if work.params is None else work.params
            if not isinstance(params, dict):
                return await self._fail(work, "invalid_params", f"params of {work.name} must be a JSON object")
            async with keep_alive(msg, self.keep_alive_s):
                return await self._run(work, route, params, idempotent, stopped)

    async def _record(self, work: ActionWork, msg: Msg) -> AttemptRecord | None:
        """The log's record of ``work``'s attempt; None, without reading, if the log cannot have one.

        A first delivery cannot follow an earlier delivery of itself, and a stop signal stored
        while the cancel watch listened would have been heard (docs/pools.md, "Tool pool: when
        the redelivery check reads the log"); every redelivery, and any item older than the
        watch, reads the log.
        """
        meta = msg.metadata
        if meta.num_delivered == 1 and await self.cancels.quiet_since(work, meta.sequence.stream):
            return None
        return await self.actions.record(work)

    async def _run(
        self, work: ActionWork, route: Route, params: dict[str, Any], idempotent: bool, stopped: asyncio.Future[str]
    ) -> str:
        """Publish started, call the tool racing the stop signal, publish the outcome.

        A non-idempotent call runs only once its start is stored (that makes a crash visible), and
        not at all if the start was already stored by another delivery of the same attempt. An
        idempotent call's start goes out when the call has run for ``started_delay_s``, or together
        with its outcome if it is done by then (one write instead of two).
        """
        events = Batch(self.bus)
        started = action_event(
            ActionStarted, work, ActionStartedData(action_id=work.action_id, attempt=work.attempt, worker=self.worker),
            "started",
        )
        if not idempotent:
            await events.send_event(started)
            acks = await events.confirm()
            if acks[0].duplicate:  # stored before by another delivery (unknown when retried: run)
                log.info("%s: not run, another delivery of the attempt started it", _name(work))
                return SKIPPED
        announced = not idempotent
        progress_count = 0

        async def announce() -> None:
            nonlocal announced
            if not announced:
                announced = True
                await events.send_event(started)

        async def progress(message: str, fraction: float | None) -> None:
            nonlocal progress_count
            await announce()
            progress_count += 1
            data = ActionProgressData(action_id=work.action_id, message=message, fraction=fraction)
            await events.send_event(action_event(ActionProgress, work, data, f"progress:{progress_count}"))

        ctx = CallContext(
            run_id=work.run_id, action_id=work.action_id, attempt=work.attempt, timeout_s=work.timeout_s,
            progress=progress,
        )
        begin = time.perf_counter()
        call = asyncio.ensure_future(route.runtime.call(route.spec.name, params, ctx))
        try:
            if not announced:
                await asyncio.wait((call, stopped), timeout=self.started_delay_s, return_when=asyncio.FIRST_COMPLETED)
                await announce()
            if not (call.done() or stopped.done()):
                await asyncio.wait((call, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:  # stopped, or this handler cancelled (the worker is stopping): stop the call too
            if not call.done():
                call.cancel()
                await asyncio.wait((call,))
        if call.cancelled():
            await events.confirm()
            log.info("%s: stopped (%s)", _name(work), stopped.result() if stopped.done() else "cancelled")
            return STOPPED
        latency_ms = round((time.perf_counter() - begin) * 1000, 3)
        exc = call.exception()
        if exc is None:
            data = ActionCompletedData(
                action_id=work.action_id, result=call.result(), latency_ms=latency_ms, attempt=work.attempt
            )
            await events.send_event(action_event(ActionCompleted, work, data, "completed"))
            status = COMPLETED
        else:
            if not isinstance(exc, ToolError):
                log.error("%s: tool crashed", _name(work), exc_info=exc)
            code, message, retryable = failure(exc, idempotent=idempotent)
            data = ActionFailedData(
                action_id=work.action_id, code=code, error=message, retryable=retryable,
                latency_ms=latency_ms, attempt=work.attempt,
            )
            await events.send_event(action_event(ActionFailed, work, data, "failed"))
            status = FAILED
        await events.confirm()
        return status

    async def _fail(self, work: ActionWork, code: str, message: str) -> str:
        """Publish ``action.failed`` without running anything (not retryable)."""
        data = ActionFailedData(action_id=work.action_id, code=code, error=message, attempt=work.attempt)
        await self.bus.publish_event(action_event(ActionFailed, work, data, "failed"))
        log.info("%s: failed without running: %s", _name(work), code)
        return FAILED


def _name(work: ActionWork) -> str:
    return f"{work.run_id}:{work.action_id}:{work.attempt} ({work.name})"
