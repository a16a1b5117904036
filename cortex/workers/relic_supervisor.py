"""One running relic instance: start it, keep it up (restart with backoff), expire it, stop it.

Lifecycle events go through ``emit`` (the pool publishes them on the run's subjects):
``relic.started`` once healthy; ``relic.unhealthy`` when it crashes or fails ``health.failures``
checks in a row; ``relic.restarted`` once a restart is healthy again; ``relic.stopped`` exactly
once at the end, with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx

from cortex.bus.events import Event, RelicData, RelicRestarted, RelicStarted, RelicStopped, RelicUnhealthy
from cortex.errors import RelicError
from cortex.manifests.relic import RelicSpec
from cortex.workers.relic_process import RelicProcess

log = logging.getLogger("cortex.workers.relic")

Emit = Callable[[type[Event], RelicData, str], Awaitable[None]]
"""Publishes a lifecycle event: (event class, data, id suffix unique within the instance)."""

STOP_REQUESTED = "stop_requested"
RUN_ENDED = "run_ended"
TTL_EXPIRED = "ttl_expired"
CRASHED = "crashed"
UNHEALTHY = "unhealthy"
START_FAILED = "start_failed"
WORKER_STOPPED = "worker_stopped"
LOST = "lost"


class RelicInstance:
    """A relic started for one run by this worker."""

    def __init__(
        self, spec: RelicSpec, *, run_id: str, instance: str, port: int, host: str, worker: str,
        emit: Emit, client: httpx.AsyncClient,
    ) -> None:
        self.spec = spec
        self.run_id = run_id
        self.instance = instance
        self.port = port
        self.url = f"http://{host}:{port}"
        self.worker = worker
        self.restarts = 0
        self._emit = emit
        self._client = client
        self._process = RelicProcess(spec, port)
        self._tasks: list[asyncio.Task[None]] = []
        self._unhealthy = 0
        self._final: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The current process id."""
        return self._process.pid

    @property
    def running(self) -> bool:
        """True until the instance has stopped for good."""
        return self._final is None

    def data(self, reason: str = "", detail: str = "") -> RelicData:
        """The lifecycle payload describing this instance now."""
        return RelicData(
            relic=self.spec.name, instance=self.instance, worker=self.worker, pid=self.pid,
            url=self.url, restarts=self.restarts, reason=reason, detail=detail[-2000:],
        )

    async def start(self) -> None:
        """Spawn, wait until healthy, announce it, then supervise and arm the TTL.

        RelicError if it never became healthy (``relic.stopped`` with ``start_failed`` is published).
        """
        try:
            await self._spawn_healthy()
        except RelicError as exc:
            await self._finish(START_FAILED, str(exc))
            raise
        await self._emit(RelicStarted, self.data(), "started")
        self._tasks = [asyncio.create_task(self._supervise()), asyncio.create_task(self._expire())]

    async def stop(self, reason: str, detail: str = "") -> None:
        """Stop for good (idempotent): end supervision, kill the process group, announce it."""
        others = [task for task in self._tasks if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self._finish(reason, detail)

    async def _finish(self, reason: str, detail: str) -> None:
        """Kill the process and publish ``relic.stopped``, once; the first reason wins."""
        if self._final is None:
            for task in self._tasks:
                if task is not asyncio.current_task():
                    task.cancel()
            self._final = asyncio.create_task(self._final_stop(reason, detail))
        await asyncio.shield(self._final)

    async def _final_stop(self, reason: str, detail: str) -> None:
        """The end of the instance (runs to completion even if its caller is cancelled)."""
        await self._process.kill()
        await self._emit(RelicStopped, self.data(reason, detail), "stopped")

    async def _spawn_healthy(self) -> None:
        """Start a fresh process and wait for its health check (RelicError otherwise)."""
        self._process = RelicProcess(self.spec, self.port)
        await self._process.spawn()
        try:
            await self._process.wait_healthy(self._client)
        except RelicError:
            await self._process.kill()
            raise

    async def _expire(self) -> None:
        """Stop the instance when its time to live is over."""
        await asyncio.sleep(self.spec.ttl_s)
        await self.stop(TTL_EXPIRED, f"time to live of {self.spec.ttl_s:g}s is over")

    async def _supervise(self) -> None:
        """Restart the service after a crash or failed health checks, within the restart policy."""
        policy = self.spec.restart
        while True:
            reason, detail = await self._until_down()
            while True:
                self._unhealthy += 1
                await self._emit(RelicUnhealthy, self.data(reason, detail), f"unhealthy-{self._unhealthy}")
                if self.restarts >= policy.max_restarts:
                    await self._finish(reason, f"gave up after {self.restarts} restarts: {detail}")
                    return
                await self._process.kill()
                self.restarts += 1
                await asyncio.sleep(policy.delay_s(self.restarts))
                try:
                    await self._spawn_healthy()
                except RelicError as exc:
                    reason, detail = CRASHED, str(exc)
                    continue
                break
            await self._emit(RelicRestarted, self.data(reason), f"restarted-{self.restarts}")
            log.info("relic %s of run %s restarted (%d)", self.spec.name, self.run_id, self.restarts)

    async def _until_down(self) -> tuple[str, str]:
        """Wait until the process exits or fails its health check ``failures`` times in a row."""
        exit_task = asyncio.create_task(self._process.wait())
        health_task = asyncio.create_task(self._health_failures())
        try:
            await asyncio.wait({exit_task, health_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (exit_task, health_task):
                task.cancel()
            await asyncio.gather(exit_task, health_task, return_exceptions=True)
        if exit_task.done() and not exit_task.cancelled():
            return CRASHED, f"exit code {exit_task.result()}; last output:\n{self._process.tail()}"
        return UNHEALTHY, health_task.result()

    async def _health_failures(self) -> str:
        """Probe every ``interval_s``; return the last problem after ``failures`` failures in a row."""
        health = self.spec.health
        failures = 0
        while True:
            await asyncio.sleep(health.interval_s)
            problem = await self._process.probe(self._client)
            failures = failures + 1 if problem else 0
            if problem and failures >= health.failures:
                return f"{failures} health checks failed in a row; last: {problem}"


async def stop_all(instances: list[RelicInstance], reason: str) -> None:
    """Stop several instances at once."""
    await asyncio.gather(*(i.stop(reason) for i in instances), return_exceptions=True)
