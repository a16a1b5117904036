"""Which kernel consumes which partition of the kernel input stream: leases in one KV entry.

Every kernel keeps itself in a table (``members``: kernel id -> last heartbeat) and claims up
to its fair share, ``ceil(partitions / live members)``, of the partitions nobody live holds
(``owners``: partition -> kernel id), releasing the ones beyond it. The table is one KV entry
updated with compare-and-set, so two kernels never both win one claim; a kernel that stops
leaves the table, one that dies is dropped once its heartbeat is ``ttl_s`` old (wall clocks of
the kernels must roughly agree). Ownership is an optimisation only: it makes a run's inputs
reach one kernel in order. Correctness never depends on it (optimistic concurrency per run,
and trust only for contiguous deliveries, see ``service.Trust``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable

from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError

from cortex.bus.client import Bus

log = logging.getLogger("cortex.kernel")

BUCKET = "cortex_kernel_leases"
KEY = "partitions"


class Partitions:
    """Claims and renews this kernel's fair share of ``count`` partitions; reports changes."""

    def __init__(
        self,
        bus: Bus,
        kernel_id: str,
        count: int,
        on_change: Callable[[set[int]], Awaitable[None]],
        *,
        ttl_s: float = 5.0,
        tick_s: float = 0.5,
    ) -> None:
        self.bus = bus
        self.kernel_id = kernel_id
        self.count = count
        self.on_change = on_change
        self.ttl_s = ttl_s
        self.tick_s = tick_s
        self.owned: set[int] = set()
        self._kv = None

    async def _bucket(self):  # type: ignore[no-untyped-def]
        if self._kv is None:
            try:
                self._kv = await self.bus.js.key_value(BUCKET)
            except (BucketNotFoundError, NotFoundError):
                self._kv = await self.bus.js.create_key_value(
                    KeyValueConfig(bucket=BUCKET, history=1, storage=StorageType.MEMORY)
                )
        return self._kv

    async def run(self) -> None:
        """Renew and rebalance every ``tick_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS away for a moment: keep what we have, try again
                # The bucket lives in memory: a restarted server has lost it, so look it up
                # (or create it) afresh next time.
                self._kv = None
                log.warning("partition leases not renewed: %s", exc)

    async def tick(self, *, leaving: bool = False) -> set[int]:
        """Update the table once (retrying lost compare-and-sets); apply and return the partitions owned."""
        kv = await self._bucket()
        for _ in range(20):
            try:
                entry = await kv.get(KEY)
                table, revision = json.loads(entry.value or b"{}"), entry.revision
            except KeyNotFoundError:
                table, revision = {}, None
            owned = self._rebalance(table, leaving)
            value = json.dumps(table).encode()
            try:
                if revision is None:
                    await kv.create(KEY, value)
                else:
                    await kv.update(KEY, value, last=revision)
            except KeyWrongLastSequenceError:
                continue
            break
        else:
            return self.owned
        if owned != self.owned:
            log.info("kernel %s consumes partitions %s", self.kernel_id, sorted(owned))
            self.owned = owned
            await self.on_change(owned)
        return owned

    async def leave(self) -> None:
        """Drop out of the table (the partitions go to the other kernels at their next tick)."""
        await self.tick(leaving=True)

    def _rebalance(self, table: dict, leaving: bool) -> set[int]:
        """Edit the table for this kernel: heartbeat, drop the dead, release extras, claim free ones."""
        now = time.time()
        members: dict[str, float] = table.setdefault("members", {})
        owners: dict[str, str] = table.setdefault("owners", {})
        if leaving:
            members.pop(self.kernel_id, None)
        else:
            members[self.kernel_id] = now
        for member in [m for m, seen in members.items() if now - seen > self.ttl_s]:
            del members[member]
        for partition in [p for p, owner in owners.items() if owner not in members]:
            del owners[partition]
        mine = sorted(int(p) for p, owner in owners.items() if owner == self.kernel_id)
        fair = math.ceil(self.count / len(members)) if members else 0
        for partition in mine[fair:]:
            del owners[str(partition)]
        mine = mine[:fair]
        start = hash(self.kernel_id) % self.count
        for i in range(self.count):
            if len(mine) >= fair:
                break
            partition = (start + i) % self.count
            if str(partition) not in owners:
                owners[str(partition)] = self.kernel_id
                mine.append(partition)
        return set(mine)
