"""What Cortex publishes: the subject, payload and NATS headers of events and work items."""

from __future__ import annotations

from typing import Any

from cortex.bus import subjects
from cortex.bus.events import Event, encode
from cortex.bus.work import encode_work

Message = tuple[str, bytes, dict[str, str]]
"""(subject, payload, headers) of one publish."""

HDR_MSG_ID = "Nats-Msg-Id"
HDR_EXPECTED_SEQ = "Nats-Expected-Last-Subject-Sequence"
HDR_EXPECTED_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
HDR_TYPE = "Cortex-Type"
HDR_TRACEPARENT = "traceparent"

ERR_WRONG_LAST_SEQUENCE = 10071
"""JetStream's ``err_code`` when an expected-last-sequence check fails."""


def event_headers(event: Event) -> dict[str, str]:
    """Headers that travel with an event: its type, its message id and its trace context."""
    headers = {HDR_MSG_ID: event.id, HDR_TYPE: event.type}
    if event.trace is not None:
        headers[HDR_TRACEPARENT] = event.trace.traceparent
    return headers


def event_subject(event: Event) -> str:
    """Where an event is published: the run's subject, or the system space for run-less events."""
    if event.run_id:
        return subjects.run_event(event.run_id, event.type)
    return subjects.system_event(event.type)


def event_message(event: Event, expected_last_seq: int | None = None) -> Message:
    """An event to publish; with ``expected_last_seq`` only if its run has not moved on since."""
    headers = event_headers(event)
    if expected_last_seq is not None:
        headers[HDR_EXPECTED_SEQ] = str(expected_last_seq)
        headers[HDR_EXPECTED_SUBJECT] = subjects.run_events(event.run_id)
    return event_subject(event), encode(event), headers


def work_message(pool: str, item: Any, lane: str | None = None) -> Message:
    """A work item for ``cortex.work.<pool>[.<lane>]`` (deduplicated by its message id)."""
    headers = {HDR_MSG_ID: item.msg_id, HDR_TYPE: f"work.{type(item).__struct_config__.tag}"}
    if item.traceparent:
        headers[HDR_TRACEPARENT] = item.traceparent
    return subjects.work(pool, lane), encode_work(item), headers
