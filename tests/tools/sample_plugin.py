"""A python-runtime plugin used by test_python_runtime.py."""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated

from pydantic import BaseModel, Field

from cortex.adapters.tools import CallContext, tool
from cortex.manifests.plugin import Permissions

FLAG = threading.Event()


class Point(BaseModel):
    """A point in the plane."""

    x: int
    y: int


@tool
def add(a: int, b: int = 2) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number,
            which defaults to two.
    """
    return a + b


@tool(name="shout", side_effects="write", idempotent=False, timeout_s=3)
async def shout_text(text: Annotated[str, Field(min_length=1, description="What to shout.")], ctx: CallContext) -> dict:
    """Upper-case a text, reporting progress on the way."""
    await ctx.progress("shouting", 0.5)
    return {"text": text.upper(), "run": ctx.run_id}


@tool
def wait_for_flag(seconds: float) -> bool:
    """Block this thread until FLAG is set or ``seconds`` pass."""
    return FLAG.wait(seconds)


@tool
async def slow(seconds: float) -> str:
    """Sleep asynchronously."""
    await asyncio.sleep(seconds)
    return "woke"


@tool
def boom() -> None:
    """Fail."""
    raise RuntimeError("kaboom")


@tool
def opaque() -> object:
    """Return something that is not JSON."""
    return object()


@tool
def hosts(perms: Permissions) -> list[str]:
    """The hosts this plugin may reach."""
    return list(perms.network)


@tool
def mirror(p: Point) -> Point:
    """Swap a point's coordinates."""
    return Point(x=p.y, y=p.x)
