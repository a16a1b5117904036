"""Small builders for bus tests."""

from __future__ import annotations

from datetime import datetime, timezone

from cortex.bus.events import Ping, PingData


def ping(run_id: str, n: int, text: str = "") -> Ping:
    """A ping event with a deterministic id."""
    return Ping(
        id=f"{run_id}:{n}", run_id=run_id, time=datetime(2026, 1, 1, tzinfo=timezone.utc),
        data=PingData(text=text or f"#{n}", seq=n),
    )
