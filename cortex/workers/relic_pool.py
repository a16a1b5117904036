"""Relics: long-lived services a run starts, calls and stops through ``relic`` actions.

Params: ``{"op": "start"}``, ``{"op": "call", "endpoint": NAME, "body": ..., "query": {...}}``,
``{"op": "stop"}``. A relic belongs to one run (key: run id + relic name) and lives in the worker
process that started it; it is stopped on request, when its run ends, when its TTL expires, or
when it keeps crashing. Any relic worker can call it (its URL is in ``relic.started``); a worker
that does not own it asks the owner to stop it with ``relic.stop_requested``. See docs/pools.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
from collections.abc import Sequence
from typing import Any

import httpx
from nats.aio.msg import Msg

from cortex.bus import subjects
from cortex.bus.client import Bus
from cortex.bus.embedded import free_port
from cortex.bus.events import (
    ActionCompleted,
    ActionCompletedData,
    ActionStarted,
    ActionStartedData,
    Event,
    RelicData,
    RelicRestarted,
    RelicStarted,
    RelicStopped,
    RelicStopRequested,
    RunCancelled,
    RunCompleted,
    RunFailed,
)
from cortex.bus.work import ActionWork, AnyWork
from cortex.errors import ManifestError, RelicError
from cortex.manifests.relic import RelicSpec
from cortex.manifests.store import ManifestStore
from cortex.workers.agent_child import attempt_settled, fail_action, outcome_id
from cortex.workers.base import HandlerTasks, keep_alive, make_event, pool_consumer, serve_consumer, utcnow, worker_id
from cortex.workers.relic_process import RelicProcess
from cortex.workers.relic_supervisor import (
    LOST,
    RUN_ENDED,
    STOP_REQUESTED,
    WORKER_STOPPED,
    Emit,
    RelicInstance,
    stop_all,
)

log = logging.getLogger("cortex.workers.relic")

POOL = "relic"
OPS = ("start", "call", "stop")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cortex worker relic``."""
    parser.add_argument("--concurrency", type=int, default=16, help="relic actions handled at once (default 16)")
    parser.add_argument(
        "--advertise-host", default="127.0.0.1",
        help="host other workers use to reach relics started here (default 127.0.0.1)",
    )


async def serve(bus: Bus, args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Run the pool until ``stop`` is set; every relic started here is stopped on the way out."""
    await RelicPool(bus, host=args.advertise_host).serve(stop, concurrency=args.concurrency)


def running_instance(events: Sequence[Event], relic: str) -> RelicData | None:
    """The latest instance of ``relic`` that started and has not stopped, from a run's relic events."""
    live: dict[str, RelicData] = {}
    for event in events:
        data = getattr(event, "data", None)
        if not isinstance(data, RelicData) or data.relic != relic:
            continue
        if isinstance(event, RelicStarted | RelicRestarted):
            live.pop(data.instance, None)
            live[data.instance] = data
        elif isinstance(event, RelicStopped):
            live.pop(data.instance, None)
    return list(live.values())[-1] if live else None


def read_op(params: Any) -> tuple[str, dict[str, Any]]:
    """The operation and the params (RelicError ``invalid_params`` if malformed)."""
    if not isinstance(params, dict) or params.get("op") not in OPS:
        raise RelicError("invalid_params", f'params must be an object with "op" one of {", ".join(OPS)}')
    return params["op"], params


def response_body(response: httpx.Response) -> Any:
    """The response as JSON when it says so (and parses), else as text."""
    if "json" in response.headers.get("content-type", ""):
        with contextlib.suppress(ValueError):
            return response.json()
    return response.text


class RelicPool:
    """One worker process of the relic pool, and the relics it owns."""

    def __init__(self, bus: Bus, *, host: str = "127.0.0.1") -> None:
        self.bus = bus
        self.host = host
        self.store = ManifestStore(bus)
        self.worker = worker_id(POOL)
        self.relics: dict[tuple[str, str], RelicInstance] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._client = httpx.AsyncClient()
        self._background: set[asyncio.Task[None]] = set()

    # ---- work --------------------------------------------------------------------------

    async def handle(self, item: AnyWork, msg: Msg) -> None:
        """Run one relic operation and publish its outcome on the parent run."""
        if not isinstance(item, ActionWork):
            log.error("relic pool got a %s work item; ignored", type(item).__name__)
            return
        if await attempt_settled(self.bus, item):
            return
        try:
            op, params = read_op(item.params)
            spec = await self.store.get("relic", item.name, RelicSpec)
        except ManifestError as exc:
            await fail_action(self.bus, item, "unknown_relic", f"unknown relic {item.name!r}: {exc}")
            return
        except RelicError as exc:
            await fail_action(self.bus, item, exc.code, str(exc))
            return
        started = ActionStartedData(action_id=item.action_id, attempt=item.attempt, worker=self.worker)
        await self.bus.publish_event(make_event(ActionStarted, item, started, event_id=outcome_id(item, "started")))
        key = (item.run_id, spec.name)
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            async with keep_alive(msg):
                if op == "call":
                    result = await self.call(item, spec, params)
                else:  # starts and stops of one relic of a run take turns
                    async with self._locks.setdefault(key, asyncio.Lock()):
                        result = await (self.start(item, spec) if op == "start" else self.stop(item, spec))
        except RelicError as exc:
            latency = (loop.time() - began) * 1000
            await fail_action(self.bus, item, exc.code, str(exc), latency_ms=latency, retryable=exc.retryable)
            return
        data = ActionCompletedData(
            action_id=item.action_id, result=result, latency_ms=(loop.time() - began) * 1000, attempt=item.attempt
        )
        await self.bus.publish_event(make_event(ActionCompleted, item, data, event_id=outcome_id(item, "completed")))

    def owned(self, run_id: str, relic: str) -> RelicInstance | None:
        """This worker's running instance of a run's relic, if any."""
        instance = self.relics.get((run_id, relic))
        return instance if instance is not None and instance.running else None

    async def elsewhere(self, run_id: str, relic: str) -> RelicData | None:
        """A running instance of the relic another worker announced on the run, if any."""
        events = [e async for e, _seq in self.bus.read(subjects.run_event(run_id, "relic.>"))]
        return running_instance(events, relic)

    async def start(self, item: ActionWork, spec: RelicSpec) -> dict[str, Any]:
        """Start the relic for the run (or report the instance already running)."""
        endpoints = {name: f"{e.method} {e.path}" for name, e in spec.endpoints.items()}
        mine = self.owned(item.run_id, spec.name)
        other = None if mine else await self.elsewhere(item.run_id, spec.name)
        if other is not None and not await self._answers(spec, other):
            lost = RelicData(relic=spec.name, instance=other.instance, worker=other.worker, restarts=other.restarts,
                             reason=LOST, detail=f"{other.url} does not answer; its worker {other.worker} is gone")
            await self._emitter(item)(RelicStopped, lost, "stopped")
            other = None
        if mine or other:
            instance, url = (mine.instance, mine.url) if mine else (other.instance, other.url)  # type: ignore[union-attr]
            return {"relic": spec.name, "instance": instance, "url": url, "status": "running", "endpoints": endpoints}
        instance = RelicInstance(
            spec, run_id=item.run_id, instance=f"{item.action_id}-{item.attempt}-{secrets.token_hex(3)}",
            port=free_port(), host=self.host, worker=self.worker, emit=self._emitter(item), client=self._client,
        )
        self.relics[(item.run_id, spec.name)] = instance
        await instance.start()
        return {"relic": spec.name, "instance": instance.instance, "url": instance.url, "status": "started",
                "endpoints": endpoints}

    async def _answers(self, spec: RelicSpec, data: RelicData) -> bool:
        """Whether an instance announced by another worker passes one health check at its URL."""
        port = httpx.URL(data.url).port
        return port is not None and await RelicProcess(spec, port).probe(self._client, httpx.URL(data.url).host) is None

    async def call(self, item: ActionWork, spec: RelicSpec, params: dict[str, Any]) -> dict[str, Any]:
        """Call one endpoint of the run's relic; the result is the HTTP status and body."""
        name = params.get("endpoint")
        endpoint = spec.endpoints.get(name) if isinstance(name, str) else None
        if endpoint is None:
            known = ", ".join(sorted(spec.endpoints)) or "none"
            raise RelicError("unknown_endpoint", f"relic {spec.name} has no endpoint {name!r} (endpoints: {known})")
        mine = self.owned(item.run_id, spec.name)
        url = mine.url if mine else getattr(await self.elsewhere(item.run_id, spec.name), "url", None)
        if url is None:
            raise RelicError("relic_not_running", f'relic {spec.name} is not running in this run; '
                             'start it first with {"op": "start"}')
        body = params.get("body")
        try:
            response = await self._client.request(
                endpoint.method, url + endpoint.path, params=params.get("query") or None,
                json=body if body is not None and endpoint.method != "GET" else None, timeout=endpoint.timeout_s,
            )
        except httpx.HTTPError as exc:
            raise RelicError("relic_unreachable", f"relic {spec.name}: {endpoint.method} {endpoint.path} "
                             f"failed: {type(exc).__name__}: {exc}", retryable=True) from None
        if response.status_code >= 400:
            raise RelicError("relic_http_error", f"relic {spec.name}: {endpoint.method} {endpoint.path} answered "
                             f"{response.status_code}: {response.text[:500]}", retryable=response.status_code >= 500)
        return {"status": response.status_code, "body": response_body(response)}

    async def stop(self, item: ActionWork, spec: RelicSpec) -> dict[str, Any]:
        """Stop the run's relic: directly if it is ours, else by asking its owner and waiting."""
        mine = self.owned(item.run_id, spec.name)
        if mine is not None:
            await mine.stop(STOP_REQUESTED, f"action {item.action_id}")
            return {"relic": spec.name, "instance": mine.instance, "stopped": True}
        other = await self.elsewhere(item.run_id, spec.name)
        if other is None:
            return {"relic": spec.name, "stopped": False, "detail": "not running"}
        ask = RelicData(relic=spec.name, instance=other.instance, worker=self.worker, reason=STOP_REQUESTED,
                        detail=f"action {item.action_id}")
        await self.bus.publish_event(make_event(RelicStopRequested, item, ask, event_id=outcome_id(item, "relic-stop")))
        try:
            await asyncio.wait_for(self._stopped_elsewhere(item.run_id, other.instance), spec.stop_timeout_s + 10)
        except asyncio.TimeoutError:
            raise RelicError("relic_stop_timeout", f"relic {spec.name}: its owner {other.worker} did not stop "
                             f"instance {other.instance} in time", retryable=True) from None
        return {"relic": spec.name, "instance": other.instance, "stopped": True}

    async def _stopped_elsewhere(self, run_id: str, instance: str) -> None:
        """Wait for ``relic.stopped`` of an instance on the run (past or future)."""
        async for event, _seq in self.bus.watch(subjects.run_event(run_id, "relic.stopped"), from_start=True):
            if isinstance(event, RelicStopped) and event.data.instance == instance:
                return

    def _emitter(self, item: ActionWork) -> Emit:
        """Publish an instance's lifecycle events on its run, caused by the start action."""

        async def emit(cls: type[Event], data: RelicData, suffix: str) -> None:
            """Publish one lifecycle event with a deterministic id."""
            event_id = f"{item.run_id}:relic:{data.relic}:{data.instance}:{suffix}"
            await self.bus.publish_event(cls(
                id=event_id, run_id=item.run_id, time=utcnow(), causation_id=item.causation_id,
                correlation_id=item.correlation_id, data=data,
            ))

        return emit

    # ---- run ends and stop requests -----------------------------------------------------

    async def _watch_run_ends(self) -> None:
        """Stop a run's relics when the run completes, fails or is cancelled."""
        async for event, _seq in self.bus.watch(f"{subjects.PREFIX}.evt.*.run.*"):
            if isinstance(event, RunCompleted | RunFailed | RunCancelled):
                keys = [key for key in self.relics if key[0] == event.run_id]
                for key in keys:
                    self._locks.pop(key, None)
                await stop_all([self.relics.pop(key) for key in keys], RUN_ENDED)

    async def _watch_stop_requests(self) -> None:
        """Stop an owned instance another worker asks to stop."""
        async for event, _seq in self.bus.watch(f"{subjects.PREFIX}.evt.*.relic.stop_requested"):
            if isinstance(event, RelicStopRequested):
                mine = self.owned(event.run_id, event.data.relic)
                if mine is not None and mine.instance == event.data.instance:
                    task = asyncio.create_task(mine.stop(STOP_REQUESTED, f"asked by {event.data.worker}: {event.data.detail}"))
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)

    async def serve(self, stop: asyncio.Event, *, concurrency: int = 16) -> None:
        """Consume ``cortex.work.relic`` until ``stop`` is set, then stop every relic started here."""
        watchers = [asyncio.create_task(self._watch_run_ends()), asyncio.create_task(self._watch_stop_requests())]
        tasks = HandlerTasks()
        consumer = pool_consumer(self.bus, POOL, tasks.wrap(self.handle), concurrency=concurrency)
        try:
            await serve_consumer(consumer, tasks, stop)
        finally:
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            await stop_all([i for i in self.relics.values() if i.running], WORKER_STOPPED)
            await self._client.aclose()
