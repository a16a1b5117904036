"""The cheapest streaming feed(): one text delta per chunk, nothing parsed (a benchmark ceiling)."""

from cortex.kernel.protocol.events import ThoughtDelta


class Floor:
    """Returns every chunk as a ``ThoughtDelta``."""

    def feed(self, chunk: str) -> list[ThoughtDelta]:
        """One delta for the chunk."""
        return [ThoughtDelta(chunk)]
