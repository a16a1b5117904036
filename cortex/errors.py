"""The one exception tree of Cortex.

Every error Cortex raises on purpose is a ``CortexError``; outside library errors are
mapped to it in one place per adapter.

::

    CortexError
    ├── ConfigError                 bad settings, environment or arguments
    ├── ManifestError               an invalid manifest (names file, line and field)
    ├── BusError                    anything on the NATS side
    │   ├── NatsUnavailable         no server answers at the URL tried
    │   ├── ConcurrencyConflict     a run's subjects moved on since we read them
    │   ├── PublishFailed           a publish was not acknowledged (after retries)
    │   └── MalformedEvent          a payload that is not a known event (subject + sequence)
    ├── ServerError                 the embedded nats-server could not start or stop
    ├── DecisionError               the decider was given an impossible state
    │   └── UnresolvedReference     a $id reference names no result (or no path in it)
    ├── ProviderError               an LLM provider failed
    │   ├── ProviderAuthError       bad or missing key
    │   ├── ModelNotFound           the provider does not know the model
    │   ├── EndpointUnreachable     nothing answers at the endpoint
    │   └── RateLimited             429/5xx after all retries
    └── ToolError                   a tool or its runtime failed
        ├── SandboxError            the sandbox could not be set up
        │   └── DockerUnavailable   no Docker engine answers
        ├── ToolTimeout             the tool ran past its wall-clock limit
        ├── OutcomeUnknown          a non-idempotent action may or may not have run
        └── RelicError              a relic service could not be started, reached or kept up
"""

from __future__ import annotations


class CortexError(Exception):
    """Root of every error Cortex raises on purpose."""


class ConfigError(CortexError):
    """Bad settings, environment variables or command-line arguments."""


class ManifestError(CortexError):
    """A manifest failed to load or validate."""


class BusError(CortexError):
    """A failure talking to NATS or JetStream."""


class NatsUnavailable(BusError):
    """No NATS server answered at the URL tried."""

    def __init__(self, url: str, detail: str = "") -> None:
        self.url = url
        hint = "start one with `cortex up`, or set CORTEX_NATS_URL to a running server"
        msg = f"cannot reach NATS at {url}: {detail or 'no answer'}; {hint}"
        super().__init__(msg)


class ConcurrencyConflict(BusError):
    """The run's subjects moved on since the publisher last read them."""

    def __init__(self, subject: str, expected: int, detail: str = "") -> None:
        self.subject = subject
        self.expected = expected
        super().__init__(
            f"concurrency conflict on {subject}: expected last sequence {expected}"
            + (f" ({detail})" if detail else "")
        )


class PublishFailed(BusError):
    """A publish was not acknowledged by JetStream."""


class MalformedEvent(BusError):
    """A message whose payload is not a valid, known event."""

    def __init__(self, subject: str, sequence: int | None, detail: str) -> None:
        self.subject = subject
        self.sequence = sequence
        super().__init__(f"malformed event on {subject} (stream sequence {sequence}): {detail}")


class ServerError(CortexError):
    """The embedded nats-server could not be started, reached or stopped."""


class DecisionError(CortexError):
    """The decider met a state it cannot decide on."""


class UnresolvedReference(DecisionError):
    """A ``$id`` or ``$id.path`` reference in action params names no available result."""

    def __init__(self, reference: str, action_id: str, detail: str) -> None:
        self.reference = reference
        self.action_id = action_id
        super().__init__(f"cannot resolve {reference}: {detail}")


class ProviderError(CortexError):
    """An LLM provider failed."""


class ProviderAuthError(ProviderError):
    """The provider rejected the key."""


class ModelNotFound(ProviderError):
    """The provider does not know the model."""


class EndpointUnreachable(ProviderError):
    """Nothing answered at the provider's endpoint."""


class RateLimited(ProviderError):
    """The provider kept answering 429 or 5xx after every retry."""


class ToolError(CortexError):
    """A tool or its runtime failed."""


class SandboxError(ToolError):
    """The sandbox could not be set up."""


class DockerUnavailable(SandboxError):
    """No Docker engine answered, so the docker runtime cannot run anything."""


class ToolTimeout(ToolError):
    """The tool ran past its wall-clock limit and was killed."""


class OutcomeUnknown(ToolError):
    """A non-idempotent action may have run before a crash; it is not run again."""


class RelicError(ToolError):
    """A relic (a long-lived service of a run) could not be started, reached or kept up."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        self.code = code
        self.retryable = retryable
        super().__init__(message)
