"""Idempotent provisioning of Cortex's streams and KV buckets."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
    SubjectTransform,
)
from nats.js.errors import BucketNotFoundError, NotFoundError

from cortex.bus import subjects
from cortex.bus.settings import StreamSettings


KERNEL_STREAM = "CORTEX_KERNEL"
KERNEL_PARTITIONS = 16
"""Partitions of the kernels' inputs; fixed: changing it strands the inputs stored under the old count."""


def kernel_partition_subject(partition: int | str) -> str:
    """Subject filter of one partition of the kernel input stream: ``cortex.kin.<p>.>``."""
    return f"{subjects.PREFIX}.kin.{partition}.>"


def kernel_stream_config(settings: StreamSettings) -> StreamConfig:
    """The kernel input stream: a copy of every decision input, in log order, tagged by run partition.

    One source (one internal consumer, so the log order is kept) maps
    ``cortex.evt.<run>.<type>`` to ``cortex.kin.<partition(run)>.<run>.<type>``
    (``partition(n, 1)``: a hash of the run id), so a consumer per partition hands all the
    inputs of a run to one kernel. Work-queue retention: an input is gone once a kernel acked it.
    The origin's sequence is in the ``Nats-Stream-Source`` header.
    """
    from cortex.kernel.decider import DECISION_INPUTS  # here, not at import: the kernel imports the bus

    transforms = [
        SubjectTransform(
            src=f"{subjects.PREFIX}.evt.*.{event_type}",
            dest=f"{subjects.PREFIX}.kin.{{{{partition({KERNEL_PARTITIONS},1)}}}}.{{{{wildcard(1)}}}}.{event_type}",
        )
        for event_type in sorted(DECISION_INPUTS)
    ]
    return StreamConfig(
        name=KERNEL_STREAM,
        description="Decision inputs by run partition for the kernels: cortex.kin.<partition>.<run_id>.<type>",
        sources=[StreamSource(name=subjects.EVENTS_STREAM, subject_transforms=transforms)],
        retention=RetentionPolicy.WORK_QUEUE,
        max_age=settings.events_max_age_s,
        storage=StorageType.FILE,
        num_replicas=settings.replicas,
        duplicate_window=settings.duplicate_window_s,
    )


def stream_configs(settings: StreamSettings) -> list[StreamConfig]:
    """The stream configurations Cortex needs, shaped by ``settings``."""
    common = dict(
        storage=StorageType.FILE,
        num_replicas=settings.replicas,
        duplicate_window=settings.duplicate_window_s,
    )
    return [
        StreamConfig(
            name=subjects.EVENTS_STREAM,
            description="Cortex run events: cortex.evt.<run_id>.<event_type>",
            subjects=[subjects.EVENTS_WILDCARD],
            retention=RetentionPolicy.LIMITS,
            max_age=settings.events_max_age_s,
            allow_direct=True,
            **common,
        ),
        StreamConfig(
            name=subjects.WORK_STREAM,
            description="Work for pools: cortex.work.<pool>[.<lane>]",
            subjects=[subjects.WORK_WILDCARD],
            retention=RetentionPolicy.WORK_QUEUE,
            discard=DiscardPolicy.OLD,
            **common,
        ),
        StreamConfig(
            name=subjects.SYSTEM_STREAM,
            description="Events that belong to no run: cortex.sys.<event_type>",
            subjects=[subjects.SYSTEM_WILDCARD],
            retention=RetentionPolicy.LIMITS,
            max_age=settings.system_max_age_s,
            **common,
        ),
        StreamConfig(
            name=subjects.DEAD_LETTER_STREAM,
            description="Messages no consumer could decode or handle, with the reason",
            subjects=[subjects.DEAD_LETTER_WILDCARD],
            retention=RetentionPolicy.LIMITS,
            max_age=settings.events_max_age_s,
            **common,
        ),
        kernel_stream_config(settings),
    ]


async def ensure_streams(js: JetStreamContext, settings: StreamSettings) -> None:
    """Create each stream, or update it in place if it exists already."""
    for config in stream_configs(settings):
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
        else:
            await js.update_stream(config)


async def ensure_buckets(js: JetStreamContext, settings: StreamSettings) -> None:
    """Create the KV buckets for manifests and projections if they are missing."""
    for bucket in subjects.KV_BUCKETS:
        try:
            await js.key_value(bucket)
        except (BucketNotFoundError, NotFoundError):
            await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket,
                    history=settings.kv_history,
                    storage=StorageType.FILE,
                    replicas=settings.replicas,
                )
            )


async def provision(js: JetStreamContext, settings: StreamSettings) -> None:
    """Provision every stream and bucket; safe to call any number of times."""
    await ensure_streams(js, settings)
    await ensure_buckets(js, settings)
