"""Batching of a turn's raw text and text deltas, so event volume stays bounded (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

THOUGHT = "thought.delta"
RESPONSE = "response.delta"


@dataclass(frozen=True)
class Batch:
    """What one flush publishes: a ``turn.chunk`` text, then text deltas in text order."""

    chunk: str
    deltas: tuple[tuple[str, str, bool], ...]  # (event type, text, final)


class TurnBatcher:
    """Collects raw text and merged deltas until ``max_chars`` or ``max_delay_s`` is reached."""

    def __init__(self, max_chars: int = 256, max_delay_s: float = 0.05) -> None:
        self.max_chars = max_chars
        self.max_delay_s = max_delay_s
        self._text: list[str] = []
        self._size = 0
        self._since: float | None = None
        self._deltas: list[tuple[str, bool, list[str]]] = []

    @property
    def pending(self) -> bool:
        """Whether anything waits to be flushed."""
        return bool(self._text or self._deltas)

    @property
    def since(self) -> float | None:
        """When the oldest pending raw text arrived (the loop's clock), or None."""
        return self._since

    def add_text(self, text: str, now: float) -> None:
        """Add raw model (or injected) text."""
        if self._since is None:
            self._since = now
        self._text.append(text)
        self._size += len(text)

    def add_delta(self, kind: str, text: str, final: bool = False) -> None:
        """Add a thought or response delta, merged with the one before if it continues it."""
        if self._deltas:
            last_kind, last_final, parts = self._deltas[-1]
            if last_kind == kind and last_final == final:
                parts.append(text)
                return
        self._deltas.append((kind, final, [text]))

    def due(self, now: float) -> bool:
        """Whether a flush is due: ``max_chars`` of raw text, or its oldest part is old enough."""
        return self._size >= self.max_chars or (
            self._since is not None and now - self._since >= self.max_delay_s
        )

    def take(self) -> Batch:
        """Everything pending, emptied."""
        batch = Batch(
            "".join(self._text),
            tuple((kind, "".join(parts), final) for kind, final, parts in self._deltas),
        )
        self._text, self._size, self._since, self._deltas = [], 0, None, []
        return batch
