"""The subject scheme, stream names and KV bucket names (see docs/subjects.md)."""

from __future__ import annotations

import re

from cortex.errors import ConfigError

PREFIX = "cortex"

EVENTS_STREAM = "CORTEX_EVENTS"
WORK_STREAM = "CORTEX_WORK"
SYSTEM_STREAM = "CORTEX_SYSTEM"
DEAD_LETTER_STREAM = "CORTEX_DLQ"

EVENTS_WILDCARD = f"{PREFIX}.evt.>"
WORK_WILDCARD = f"{PREFIX}.work.>"
SYSTEM_WILDCARD = f"{PREFIX}.sys.>"
DEAD_LETTER_WILDCARD = f"{PREFIX}.dlq.>"

POOLS = ("llm", "tool", "agent", "workflow", "relic")

KV_MANIFESTS = "cortex_manifests"
KV_AGENTS = "cortex_agents"
KV_PLUGINS = "cortex_plugins"
KV_RUNS = "cortex_runs"
KV_PROGRESSIONS = "cortex_progressions"
KV_BUCKETS = (KV_MANIFESTS, KV_AGENTS, KV_PLUGINS, KV_RUNS, KV_PROGRESSIONS)

_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")


def check_token(value: str, what: str = "run id") -> str:
    """Return ``value`` if it is a valid single subject token, else raise ConfigError."""
    if not _TOKEN.match(value or ""):
        raise ConfigError(
            f"invalid {what} {value!r}: use letters, digits, '-' and '_' only (no dots, spaces or wildcards)"
        )
    return value


def run_event(run_id: str, event_type: str) -> str:
    """Subject of one event of a run: ``cortex.evt.<run_id>.<event_type>``."""
    return f"{PREFIX}.evt.{check_token(run_id)}.{event_type}"


def run_events(run_id: str) -> str:
    """Wildcard over every event of one run: ``cortex.evt.<run_id>.>``."""
    return f"{PREFIX}.evt.{check_token(run_id)}.>"


def system_event(event_type: str) -> str:
    """Subject of an event that belongs to no run: ``cortex.sys.<event_type>``."""
    return f"{PREFIX}.sys.{event_type}"


def work(pool: str, lane: str | None = None) -> str:
    """Work subject of a pool, optionally a lane of it (a plugin's own pool)."""
    subject = f"{PREFIX}.work.{check_token(pool, 'pool')}"
    return f"{subject}.{check_token(lane, 'lane')}" if lane else subject


def dead_letter(stream: str) -> str:
    """Subject where messages that could not be decoded from ``stream`` are recorded."""
    return f"{PREFIX}.dlq.{stream.lower()}"


def parse_run_event(subject: str) -> tuple[str, str] | None:
    """Split ``cortex.evt.<run_id>.<event_type>`` into (run_id, event_type), else None."""
    parts = subject.split(".", 3)
    if len(parts) != 4 or parts[0] != PREFIX or parts[1] != "evt":
        return None
    return parts[2], parts[3]


def tail_filter(target: str | None) -> str:
    """Subject filter for ``cortex tail``: a run id, a subject filter, or everything."""
    if not target:
        return EVENTS_WILDCARD
    if "." in target or "*" in target or ">" in target:
        return target
    return run_events(target)
