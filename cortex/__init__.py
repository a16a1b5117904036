"""Cortex: an event-sourced runtime for LLM agents on NATS JetStream."""

__version__ = "0.1.0"
