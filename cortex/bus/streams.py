"""Idempotent provisioning of Cortex's streams and KV buckets."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError

from cortex.bus import subjects
from cortex.bus.settings import StreamSettings


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
