"""Built-in ``http`` plugin: ``http.fetch`` GETs a URL, only from hosts on the plugin's allowlist.

The allowlist is checked for the first request and for every redirect hop.
"""

from __future__ import annotations

from typing import Any

import httpx

from cortex.adapters.tools.decorator import tool
from cortex.errors import ToolError
from cortex.manifests.plugin import Permissions

MAX_REDIRECTS = 5


@tool
async def fetch(perms: Permissions, url: str, max_bytes: int = 1_000_000) -> dict[str, Any]:
    """Fetch a URL with HTTP GET and return status, content type and body text.

    Args:
        url: An http or https URL on an allow-listed host.
        max_bytes: Read at most this many bytes of the body.
    """
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ToolError(f"http.fetch: invalid URL {url!r}: {exc}") from exc

    async def check_host(request: httpx.Request) -> None:
        """Refuse any request (first or redirected) to a host off the allowlist."""
        if request.url.scheme not in ("http", "https"):
            raise ToolError(f"http.fetch: only http and https URLs are allowed, not {request.url.scheme!r}")
        if not perms.host_allowed(request.url.host):
            raise ToolError(f"http.fetch: host {request.url.host!r} is not on the plugin's allowlist")

    await check_host(httpx.Request("GET", target))
    try:
        async with (
            httpx.AsyncClient(
                follow_redirects=True, max_redirects=MAX_REDIRECTS, event_hooks={"request": [check_host]}
            ) as client,
            client.stream("GET", target) as response,
        ):
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    break
            return {
                "url": str(response.url),
                "status": response.status_code,
                "content_type": response.headers.get("content-type", ""),
                "body": bytes(body[:max_bytes]).decode(response.encoding or "utf-8", "replace"),
                "truncated": len(body) > max_bytes,
            }
    except httpx.HTTPError as exc:
        raise ToolError(f"http.fetch: {url} failed: {type(exc).__name__}: {exc}") from exc
