"""Bus settings read from the environment (CORTEX_HOME, CORTEX_NATS_URL, stream options)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cortex.errors import ConfigError

DEFAULT_PORT = 4222


def cortex_home() -> Path:
    """The local state folder: ``$CORTEX_HOME`` or ``~/.cortex``."""
    return Path(os.environ.get("CORTEX_HOME") or Path.home() / ".cortex").expanduser()


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


@dataclass(frozen=True)
class StreamSettings:
    """Retention, replication and dedupe window of Cortex's streams."""

    replicas: int = 1
    events_max_age_s: float = 7 * 24 * 3600.0
    system_max_age_s: float = 24 * 3600.0
    duplicate_window_s: float = 120.0
    kv_history: int = 5

    @classmethod
    def from_env(cls) -> "StreamSettings":
        """Read ``CORTEX_REPLICAS``, ``CORTEX_EVENTS_MAX_AGE``, ``CORTEX_DUPLICATE_WINDOW``."""
        replicas = int(_float_env("CORTEX_REPLICAS", 1))
        if replicas not in (1, 3, 5):
            raise ConfigError(f"CORTEX_REPLICAS must be 1, 3 or 5, not {replicas}")
        return cls(
            replicas=replicas,
            events_max_age_s=_float_env("CORTEX_EVENTS_MAX_AGE", cls.events_max_age_s),
            system_max_age_s=_float_env("CORTEX_SYSTEM_MAX_AGE", cls.system_max_age_s),
            duplicate_window_s=_float_env("CORTEX_DUPLICATE_WINDOW", cls.duplicate_window_s),
        )


@dataclass(frozen=True)
class BusSettings:
    """Where NATS is and how streams are shaped."""

    url: str | None = None
    streams: StreamSettings = field(default_factory=StreamSettings)

    @classmethod
    def from_env(cls) -> "BusSettings":
        """``CORTEX_NATS_URL`` (an external server or cluster) or None for the embedded one."""
        return cls(url=os.environ.get("CORTEX_NATS_URL") or None, streams=StreamSettings.from_env())
