"""One model turn: provider stream -> protocol parser -> events, with batching, sync pauses and cancel.

See docs/llm_pool.md. In short: ``turn.started``; raw text as batched ``turn.chunk`` events and
the parser's text as batched ``thought.delta``/``response.delta``; ``action.declared`` and
``parse.error`` at once (after flushing the text before them, so the log follows the text);
then ``turn.completed`` (or ``turn.failed``). A ``mode="sync"`` action stops the stream at its
closing tag; the worker waits for its outcome, injects the ``<action_result>`` block and asks
the provider to continue the same turn, if it can.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from cortex.adapters.llm.base import CompletionRequest, Provider, StreamDelta
from cortex.bus.client import Bus
from cortex.bus.events import (
    ActionDeclared as ActionDeclaredEvent,
    ActionDeclaredData,
    Event,
    ParseErrorData,
    ParseErrorEvent,
    ResponseDelta as ResponseDeltaEvent,
    TextDeltaData,
    ThoughtDelta as ThoughtDeltaEvent,
    TurnChunk,
    TurnChunkData,
    TurnCompleted,
    TurnCompletedData,
    TurnFailed,
    TurnFailedData,
    TurnStarted,
    TurnStartedData,
    Usage,
)
from cortex.bus.work import TurnWork
from cortex.errors import BusError, ConfigError, CortexError
from cortex.kernel.protocol import ActionDeclared, ParseError, Parser, ResponseDelta, ThoughtDelta
from cortex.kernel.protocol.events import Event as ParserEvent
from cortex.kernel.protocol.grammar import protocol_grammar
from cortex.specs import Limits
from cortex.workers.base import make_event
from cortex.workers.turn_batcher import RESPONSE, THOUGHT, TurnBatcher
from cortex.workers.turn_publisher import TurnPublisher
from cortex.workers.turn_signals import (
    Declared,
    SignalFeed,
    TurnSignals,
    injected_result,
    read_history,
    same_action,
)

log = logging.getLogger("cortex.workers.llm")

E = TypeVar("E", bound=Event)
ProviderFactory = Callable[[str, str, dict[str, Any]], Provider]

_TEXT_DELTAS = (ThoughtDelta, ResponseDelta)

CANCELLED = "cancelled"
SYNC_ACTION = "sync_action"
SKIPPED = "skipped"
FAILED = "failed"


class TurnOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The ``provider_options`` keys the llm pool reads itself (never passed to the provider)."""

    temperature: float = 0.0
    timeout_s: float = 120.0
    grammar: bool | dict[str, Any] = True
    max_result_chars: int = Limits().max_result_chars
    prompt_version: str = "v1"


POOL_OPTIONS = frozenset(TurnOptions.__struct_fields__)
"""Keys of ``provider_options`` that are the pool's, not the provider's."""


def split_options(options: dict[str, Any]) -> tuple[TurnOptions, dict[str, Any]]:
    """Split ``provider_options`` into the pool's options and the provider's own."""
    mine = {k: v for k, v in options.items() if k in POOL_OPTIONS}
    try:
        turn = msgspec.convert(mine, TurnOptions)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"llm pool: bad provider_options: {exc}") from None
    return turn, {k: v for k, v in options.items() if k not in POOL_OPTIONS}


def error_code(exc: BaseException) -> str:
    """A snake_case code for a failure: ``RateLimited`` -> ``rate_limited``; others ``internal_error``."""
    if not isinstance(exc, CortexError):
        return "internal_error"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def one_line(exc: BaseException) -> str:
    """The first line of an error's message (its type name when it has none)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@dataclass(frozen=True)
class TurnSettings:
    """How a worker runs turns: batching, the retry grace of sync outcomes, its name."""

    chunk_chars: int = 256
    chunk_delay_s: float = 0.05
    retry_grace_s: float = 2.0
    worker: str = ""


@dataclass(frozen=True)
class _SegmentEnd:
    """How one provider stream ended: its stop reason, or the sync action it paused at."""

    stop_reason: str
    sync: Declared | None = None


class TurnRunner:
    """Runs one ``TurnWork`` item to ``turn.completed`` or ``turn.failed`` (or skips a finished one)."""

    def __init__(
        self, bus: Bus, work: TurnWork, providers: ProviderFactory, settings: TurnSettings
    ) -> None:
        self.bus = bus
        self.work = work
        self.request = work.request
        self.providers = providers
        self.settings = settings
        self.signals = TurnSignals(work.request.turn_id, settings.retry_grace_s)
        self.attempt = 1
        self._loop = asyncio.get_running_loop()
        self._prefix = f"{work.run_id}:{work.request.turn_id}"
        self._counts: dict[str, int] = {}
        self._prior: dict[str, Declared] = {}
        self._parser = Parser()
        self._model_text: list[str] = []  # what the model wrote (what the parser has seen)
        self._output: list[str] = []  # the model's text plus injected results
        self._batcher = TurnBatcher(settings.chunk_chars, settings.chunk_delay_s)
        self._publisher = TurnPublisher(bus)
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._stopping = False
        self._in_provider = False
        self._pump: asyncio.Task[_SegmentEnd] | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._wakeup = asyncio.Event()

    # ---- the turn ----------------------------------------------------------------------

    async def run(self) -> str:
        """Run the turn; return its stop reason, ``failed``, or ``skipped`` (already finished)."""
        start = self._loop.time()
        last = await read_history(self.bus, self.work.run_id, self._observe)
        if self.signals.finished or self.signals.cancel is not None:
            log.info("%s: not run (%s)", self._prefix, self.signals.finished or "cancelled")
            return SKIPPED
        self.attempt = self.signals.attempts + 1
        self._prefix = f"{self._prefix}:{self.attempt}"
        self._prior = dict(self.signals.declared)
        feed = await SignalFeed.open(self.bus, self.work.run_id, last, self._observe)
        try:
            started = TurnStartedData(
                turn_id=self.request.turn_id, worker=self.settings.worker, attempt=self.attempt
            )
            await self._emit(TurnStarted, started, "started")
            try:
                stop_reason = await self._generate()
            except BusError:
                raise
            except Exception as exc:  # noqa: BLE001 - every other failure ends the turn visibly
                if not isinstance(exc, CortexError):
                    log.exception("%s: turn failed", self._prefix)
                await self._settle_flush()
                await self._flush()
                failed = TurnFailedData(
                    turn_id=self.request.turn_id, code=error_code(exc), reason=one_line(exc)
                )
                await self._emit(TurnFailed, failed, "failed", wait=True)
                return FAILED
            await self._settle_flush()
            await self._flush()
            completed = TurnCompletedData(
                turn_id=self.request.turn_id,
                stop_reason=stop_reason,
                output="".join(self._output),
                usage=Usage(self._prompt_tokens, self._completion_tokens),
                latency_ms=round((self._loop.time() - start) * 1000, 3),
            )
            await self._emit(TurnCompleted, completed, "completed", wait=True)
            return stop_reason
        finally:
            if self._timer is not None:
                self._timer.cancel()
            await feed.aclose()

    async def _generate(self) -> str:
        """Stream, pausing at sync actions and continuing after their results; the stop reason."""
        options, provider_options = split_options(self.request.provider_options)
        provider = self.providers(self.request.provider, self.request.model, provider_options)
        while True:
            remaining = self.request.max_tokens - self._completion_tokens
            end = await self._segment(provider, self._completion(provider, options, remaining))
            if self._stopping:
                return CANCELLED
            if end.sync is None:
                await self._handle(self._parser.close(), pause=False)
                return end.stop_reason
            if not provider.supports_continuation:
                return SYNC_ACTION  # the kernel's next turn carries the result
            outcome = await self._outcome(end.sync)
            if outcome is None:
                return CANCELLED
            block = injected_result(end.sync.data, outcome, options.max_result_chars)
            self._output.append(block)
            self._batcher.add_text(block, self._loop.time())
            if self._completion_tokens >= self.request.max_tokens:
                return "max_tokens"

    def _completion(self, provider: Provider, options: TurnOptions, max_tokens: int) -> CompletionRequest:
        """The request for the next stream: the context, and everything written so far."""
        prefix = "".join(self._output)
        grammar = None
        if provider.supports_grammar and options.grammar is not False:
            bounds = options.grammar if isinstance(options.grammar, dict) else {}
            try:
                grammar = protocol_grammar(
                    self.request.tools, resume_from=prefix,
                    first_ordinal=self.request.next_action_ordinal, **bounds,
                )
            except TypeError as exc:
                raise ConfigError(f"llm pool: bad grammar options {sorted(bounds)}: {exc}") from None
        return CompletionRequest(
            model=self.request.model,
            messages=self.request.messages,
            max_tokens=max_tokens,
            temperature=options.temperature,
            grammar=grammar,
            assistant_prefix=prefix,
            timeout_s=options.timeout_s,
        )

    # ---- one provider stream ----------------------------------------------------------

    async def _segment(self, provider: Provider, request: CompletionRequest) -> _SegmentEnd:
        """Consume one provider stream in its own task (so a cancel can interrupt its waits)."""
        self._pump = asyncio.create_task(self._consume(provider.stream(request)))
        try:
            return await self._pump
        finally:
            self._pump = None

    async def _consume(self, stream: AsyncIterator[StreamDelta]) -> _SegmentEnd:
        """Read deltas until the stream ends, a sync action closes, or the turn is cancelled."""
        end = _SegmentEnd("end_turn")
        pieces = 0
        usage: Usage | None = None
        batcher, parser, now = self._batcher, self._parser, self._loop.time
        try:
            while not self._stopping:
                if batcher.due(now()):
                    await self._flush()
                elif self._timer is None:
                    self._arm_timer()
                self._in_provider = True
                try:
                    delta = await anext(stream)
                except StopAsyncIteration:
                    break
                finally:
                    self._in_provider = False
                if self._flush_task is not None:
                    await self._settle_flush()
                text = delta.text
                if text:
                    pieces += 1
                    events = parser.feed(text)
                    if not events or (len(events) == 1 and events[0].__class__ in _TEXT_DELTAS):
                        self._keep(text)  # the common case: nothing to publish at once
                        if events:
                            self._batch(events[0])
                    else:
                        sync = await self._take(text, events)
                        if sync is not None:
                            end = _SegmentEnd(SYNC_ACTION, sync)
                            break
                if delta.stop_reason is not None:
                    end, usage = _SegmentEnd(delta.stop_reason), delta.usage
                    break
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
        if usage is not None:
            self._prompt_tokens += usage.prompt_tokens
            self._completion_tokens += usage.completion_tokens
        else:  # cut short: no usage from the provider; count one token per piece
            self._completion_tokens += pieces
        return end

    def _keep(self, text: str) -> None:
        """Record a piece of model text: in the output, and pending for the next ``turn.chunk``."""
        self._model_text.append(text)
        self._output.append(text)
        self._batcher.add_text(text, self._loop.time())

    def _batch(self, event: ThoughtDelta | ResponseDelta) -> None:
        """Add a text delta to the pending batch."""
        if event.__class__ is ThoughtDelta:
            self._batcher.add_delta(THOUGHT, event.text)
        else:
            self._batcher.add_delta(RESPONSE, event.text, event.final)  # type: ignore[union-attr]

    async def _take(self, text: str, events: list[ParserEvent]) -> Declared | None:
        """Record a piece of model text and publish what it completed; the sync action it closes."""
        sync = next(
            (i for i, e in enumerate(events) if isinstance(e, ActionDeclared) and e.mode == "sync"),
            None,
        )
        if sync is not None:  # the stream stops at the sync action's closing tag
            keep = events[sync].end - (self._parser.offset - len(text))
            events = events[: sync + 1]
            if keep < len(text):
                text = text[:keep]
                self._parser = Parser()
                self._parser.feed("".join(self._model_text) + text)  # same state, cut text unseen
        self._keep(text)
        return await self._handle(events, pause=sync is not None)

    async def _handle(self, events: list[ParserEvent], *, pause: bool) -> Declared | None:
        """Batch text deltas; publish actions and parse errors at once; the sync action, if pausing."""
        paused = None
        for event in events:
            if isinstance(event, _TEXT_DELTAS):
                self._batch(event)
            elif isinstance(event, ActionDeclared):
                declared = await self._declare(event)
                if pause and event.mode == "sync":
                    paused = declared
            elif isinstance(event, ParseError):
                await self._flush()
                error = ParseErrorData(
                    turn_id=self.request.turn_id,
                    code=event.code,
                    message=event.message,
                    action_id=event.action_id,
                    offset=event.offset,
                    snippet=event.snippet,
                )
                await self._emit(ParseErrorEvent, error, "parse_error")
        return paused

    async def _declare(self, action: ActionDeclared) -> Declared:
        """Publish ``action.declared`` now (an identical one from an earlier attempt stands)."""
        data = ActionDeclaredData(
            turn_id=self.request.turn_id,
            action_id=action.id,
            type=action.type,
            name=action.name,
            mode=action.mode,
            depends_on=action.depends_on,
            params=action.params,
            refs=action.refs,
            raw=action.raw,
            output_key=action.output_key,
            timeout_s=action.timeout,
            retry=action.retry,
        )
        prior = self._prior.get(action.id)
        if prior is not None and same_action(prior.data, data):
            return prior
        await self._flush()
        # sent at once; only a sync action waits for its ack (its sequence orders its outcome)
        seq = await self._emit(ActionDeclaredEvent, data, "action", wait=action.mode == "sync")
        return Declared(data, seq)

    # ---- sync outcomes and cancellation ----------------------------------------------

    async def _outcome(self, declared: Declared) -> Event | None:
        """Wait for the sync action's final outcome; None if the turn is cancelled meanwhile."""
        while not self._stopping:
            outcome = self.signals.outcome(declared.data.action_id, declared.seq, self._loop.time())
            if outcome is not None:
                return outcome
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), self.settings.retry_grace_s)
            except TimeoutError:
                pass
        return None

    def _observe(self, event: Event, seq: int) -> None:
        """Fold a signal event; a cancellation stops the turn at once."""
        self.signals.observe(event, seq, self._loop.time())
        self._wakeup.set()
        if self.signals.cancel is not None and not self._stopping:
            self._stopping = True
            if self._in_provider and self._pump is not None:
                self._pump.cancel()  # interrupts the wait for the next delta

    # ---- publishing --------------------------------------------------------------------

    async def _emit(self, cls: type[E], data: Any, kind: str, *, wait: bool = False) -> int:
        """Send one event with id ``<run>:<turn>:<attempt>:<kind>:<n>``; with ``wait``, wait until
        it and all before it are stored and return its stream sequence (else 0)."""
        n = self._counts[kind] = self._counts.get(kind, 0) + 1
        event = make_event(cls, self.work, data, event_id=f"{self._prefix}:{kind}:{n}")
        if wait:
            return await self._publisher.send_and_wait(event)
        await self._publisher.send(event)
        return 0

    async def _flush(self) -> None:
        """Publish the pending ``turn.chunk`` and text deltas."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._batcher.pending:
            return
        batch = self._batcher.take()
        turn_id = self.request.turn_id
        if batch.chunk:
            seq = self._counts.get("chunk", 0) + 1
            await self._emit(TurnChunk, TurnChunkData(turn_id=turn_id, seq=seq, text=batch.chunk), "chunk")
        for kind, text, final in batch.deltas:
            data = TextDeltaData(turn_id=turn_id, text=text, final=final)
            if kind == THOUGHT:
                await self._emit(ThoughtDeltaEvent, data, "thought")
            else:
                await self._emit(ResponseDeltaEvent, data, "response")

    def _arm_timer(self) -> None:
        """Flush pending text ``chunk_delay_s`` after it arrived even if the provider goes quiet."""
        since = self._batcher.since
        if self._timer is None and since is not None:
            delay = since + self.settings.chunk_delay_s - self._loop.time()
            self._timer = self._loop.call_later(max(delay, 0.0), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._in_provider and self._flush_task is None and self._batcher.pending:
            self._flush_task = asyncio.create_task(self._flush())

    async def _settle_flush(self) -> None:
        """Wait for a timer-started flush, so that nothing is published out of order."""
        task, self._flush_task = self._flush_task, None
        if task is not None:
            await task
