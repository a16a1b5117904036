"""The edges: LLM providers, tool runtimes, the HTTP API, OpenTelemetry."""
