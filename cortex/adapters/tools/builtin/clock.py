"""Built-in ``time`` plugin: the current time in a timezone."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cortex.adapters.tools.decorator import tool
from cortex.errors import ToolError


@tool
def now(timezone: str = "UTC") -> dict[str, Any]:
    """The current date and time in an IANA timezone.

    Args:
        timezone: An IANA timezone name such as "Europe/Paris" or "UTC".
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ToolError(f"time.now: unknown timezone {timezone!r}") from exc
    moment = datetime.now(zone)
    return {
        "timezone": timezone,
        "iso": moment.isoformat(),
        "unix": moment.timestamp(),
        "utc_offset": moment.strftime("%z"),
        "weekday": moment.strftime("%A"),
    }
