"""Built-in ``time`` plugin: the current time in a timezone, and waiting."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

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


@tool
async def wait(seconds: Annotated[float, Field(ge=0, le=30)]) -> dict[str, Any]:
    """Wait a number of seconds (at most 30), then return the time waited; for demos and pacing.

    Args:
        seconds: How long to wait, from 0 to 30 seconds.
    """
    started = time.monotonic()
    await asyncio.sleep(seconds)
    return {"waited_s": round(time.monotonic() - started, 3)}
