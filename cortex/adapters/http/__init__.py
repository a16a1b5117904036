"""The HTTP API (aiohttp): runs, events as SSE, read models, OpenAI-compatible chat completions.

The app factory is ``cortex.adapters.http.app.make_app(bus, token=..., local_mode=...)``.
"""
