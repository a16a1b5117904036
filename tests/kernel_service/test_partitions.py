"""Trust in contiguous deliveries, partition leases, and the partitioned kernel input stream."""

from __future__ import annotations

import asyncio
import time

from nats.aio.msg import Msg

from cortex.bus.client import Bus
from cortex.bus.feed import Delivery, delivery_of
from cortex.bus.streams import KERNEL_PARTITIONS, KERNEL_STREAM
from cortex.kernel.partitions import Partitions
from cortex.kernel.service import Trust, origin_seq
from tests.kernel_service.support import run_requested


def delivery(dseq: int, delivered: int = 1) -> Delivery:
    return Delivery(stream_seq=100 + dseq, delivery_seq=dseq, delivered=delivered, pending=0)


def test_contiguous_first_deliveries_share_an_epoch_and_a_gap_starts_a_new_one() -> None:
    trust = Trust()
    first = trust.delivered(delivery(1))
    assert trust.delivered(delivery(2)) == first and trust.delivered(delivery(3)) == first
    after_gap = trust.delivered(delivery(5))  # delivery 4 went to another client
    assert after_gap is not None and after_gap != first
    assert trust.delivered(delivery(6)) == after_gap


def test_a_redelivery_is_never_trusted() -> None:
    trust = Trust()
    epoch = trust.delivered(delivery(1))
    assert trust.delivered(delivery(2, delivered=2)) is None
    assert trust.delivered(delivery(3)) == epoch  # the redelivery took a delivery sequence: no gap


def test_epochs_of_two_feeds_never_collide() -> None:
    one, two = Trust(), Trust()
    assert one.delivered(delivery(1)) != two.delivered(delivery(1))


def test_delivery_metadata_is_read_from_the_ack_subject() -> None:
    assert delivery_of("$JS.ACK.CORTEX_KERNEL.kernel-p03.2.57.9.1700000000000000000.4") == Delivery(57, 9, 2, 4)
    assert delivery_of("$JS.ACK.hub.ACCHASH.CORTEX_KERNEL.kernel-p03.1.57.9.1700000000000000000.0.tok") == Delivery(
        57, 9, 1, 0
    )
    assert delivery_of("_INBOX.abc") is None


def test_the_origin_sequence_comes_from_the_source_header() -> None:
    msg = Msg(None, subject="cortex.kin.3.r.run.requested",  # type: ignore[arg-type]
              headers={"Nats-Stream-Source": "CORTEX_EVENTS 1234 cortex.evt.*.x cortex.kin.x cortex.evt.r.x"})
    assert origin_seq(msg) == 1234
    assert origin_seq(Msg(None, subject="x", headers={})) is None  # type: ignore[arg-type]


def partitions(kernel: str, table: dict, count: int = 16) -> set[int]:
    async def ignore(_: set[int]) -> None:
        return None

    return Partitions(None, kernel, count, ignore)._rebalance(table, leaving=False)  # type: ignore[arg-type]


def test_kernels_take_fair_shares_and_the_dead_lose_theirs() -> None:
    table: dict = {}
    assert partitions("a", table) == set(range(16))  # alone: everything
    assert partitions("b", table) == set()  # all taken
    a = partitions("a", table)  # a sees b and gives half back
    b = partitions("b", table)
    assert len(a) == len(b) == 8 and not a & b
    table["members"]["a"] = time.time() - 60  # a stopped heartbeating
    assert partitions("b", table) == set(range(16))
    assert "a" not in table["members"]


async def test_inputs_are_copied_to_their_run_partition_in_log_order(bus: Bus) -> None:
    requests = [run_requested(f"part{i}") for i in range(20)]
    seqs = [await bus.publish_event(request) for request in requests]
    info = await bus.js.stream_info(KERNEL_STREAM, subjects_filter="cortex.kin.>")
    for _ in range(50):
        if info.state.messages == len(requests):
            break
        await asyncio.sleep(0.05)
        info = await bus.js.stream_info(KERNEL_STREAM, subjects_filter="cortex.kin.>")
    subjects = info.state.subjects or {}
    assert sum(subjects.values()) == len(requests)
    by_run = {subject.split(".")[3]: int(subject.split(".")[2]) for subject in subjects}
    assert set(by_run) == {r.run_id for r in requests}
    assert all(0 <= p < KERNEL_PARTITIONS for p in by_run.values()) and len(set(by_run.values())) > 1
    sourced = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await bus.js.get_msg(KERNEL_STREAM, seq)
        sourced.append(int(msg.headers["Nats-Stream-Source"].split(" ")[1]))
    assert sourced == seqs  # one source keeps the log order
