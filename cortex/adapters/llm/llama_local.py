"""Local llama.cpp provider: llama-cpp-python in process, generating in a worker thread.

The model (default: Gemma 3 270M, see ``local_model``) is loaded once per provider, on first
use, inside the provider's single generation thread; the event loop only awaits an asyncio
queue that the thread feeds with ``call_soon_threadsafe``. Closing the stream sets a stop flag
that the thread checks between tokens and between prompt chunks of ``PROMPT_CHUNK`` tokens, so
the CPU work stops within about one token.

Prompts use the Gemma 3 chat format (the GGUF carries no chat template): the system prompt is
folded into the first user turn and the output is generated in a ``model`` turn. With
``assistant_prefix`` the prompt ends with the open model turn plus the prefix, and only the
continuation is generated. A ``grammar`` constrains the generated text only (not the prefix):
when continuing, pass the grammar for the rest, e.g. ``protocol_grammar(tools,
resume_from=prefix)``.
"""

from __future__ import annotations

import asyncio
import codecs
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import llama_cpp

from cortex.adapters.llm.base import CompletionRequest, StreamDelta
from cortex.adapters.llm.local_model import default_model_path
from cortex.bus.events import ChatMessage, Usage
from cortex.errors import ModelNotFound, ProviderError

PROMPT_CHUNK = 32
"""Prompt tokens evaluated between two checks of the stop flag."""

_Emit = Callable[[StreamDelta | BaseException], None]


class LlamaLocalProvider:
    """Streams completions from a GGUF model run in process by llama.cpp."""

    name = "local"
    supports_continuation = True
    supports_grammar = True

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int = 2,
        seed: int = 0,
    ) -> None:
        if model_path and not Path(model_path).expanduser().is_file():
            raise ModelNotFound(f"local model file not found: {model_path}")
        self._model_path = Path(model_path).expanduser() if model_path else None
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._seed = seed
        self._llm: llama_cpp.Llama | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cortex-llama")
        self._stops: set[threading.Event] = set()
        self._running = 0

    @property
    def generating(self) -> bool:
        """Whether the generation thread is busy with a request right now."""
        return self._running > 0

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamDelta]:
        """Stream the completion; closing the iterator early stops generation."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[StreamDelta | BaseException] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: StreamDelta | BaseException) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody listens any more
                stop.set()

        try:
            loop.run_in_executor(self._executor, self._run, request, stop, emit)
        except RuntimeError as exc:  # the executor was shut down by aclose()
            raise ProviderError("the local llama.cpp provider is closed") from exc
        self._stops.add(stop)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.stop_reason is not None:
                    return
        finally:
            stop.set()
            self._stops.discard(stop)

    async def aclose(self) -> None:
        """Stop running generations, end the thread and free the model."""
        for stop in list(self._stops):
            stop.set()
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    # ---- the generation thread ---------------------------------------------------------

    def _run(self, request: CompletionRequest, stop: threading.Event, emit: _Emit) -> None:
        """Generate one completion in the worker thread, emitting deltas or one error."""
        if stop.is_set():
            return
        self._running += 1
        try:
            self._generate(request, stop, emit)
        except Exception as exc:  # noqa: BLE001 - every failure is handed to the stream
            emit(_map_error(exc))
        finally:
            self._running -= 1

    def _generate(self, request: CompletionRequest, stop: threading.Event, emit: _Emit) -> None:
        """Evaluate the prompt in chunks, then sample tokens until a stop condition."""
        llm = self._model()
        deadline = time.monotonic() + request.timeout_s
        prompt = gemma_prompt(llm, request.messages, request.assistant_prefix)
        room = self._n_ctx - len(prompt)
        if room <= 0:
            raise ProviderError(f"prompt of {len(prompt)} tokens does not fit n_ctx={self._n_ctx}")
        if not _prefill(llm, prompt, stop):
            return
        grammar = _grammar(llm, request.grammar) if request.grammar else None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = _StopText(request.stop)
        limit = min(request.max_tokens, room)
        completion, reason = 0, "max_tokens"
        tokens = llm.generate(prompt, temp=request.temperature, repeat_penalty=1.0, grammar=grammar)
        try:
            for token in tokens:
                if stop.is_set():
                    return
                if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                    reason = "end_turn"
                    break
                completion += 1
                piece, hit = text.push(decoder.decode(llm.detokenize([token])))
                if piece:
                    emit(StreamDelta(text=piece))
                if hit:
                    reason = "stop_sequence"
                    break
                if completion >= limit:
                    break
                if time.monotonic() > deadline:
                    raise ProviderError(f"local generation ran past timeout_s={request.timeout_s}")
        finally:
            tokens.close()
        if reason != "stop_sequence":
            tail, _ = text.push(decoder.decode(b"", final=True), final=True)
            if tail:
                emit(StreamDelta(text=tail))
        usage = Usage(prompt_tokens=len(prompt), completion_tokens=completion)
        emit(StreamDelta(stop_reason=reason, usage=usage))

    def _model(self) -> llama_cpp.Llama:
        """The loaded model (loaded on first use, in the generation thread)."""
        if self._llm is None:
            path = self._model_path or default_model_path()
            self._llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=self._n_ctx,
                n_threads=self._n_threads,
                n_threads_batch=self._n_threads,
                seed=self._seed,
                verbose=False,
            )
        return self._llm


def gemma_prompt(
    llm: llama_cpp.Llama, messages: Sequence[ChatMessage], assistant_prefix: str = ""
) -> list[int]:
    """Tokens of the Gemma 3 chat format for ``messages``, ending in an open model turn.

    Turn markers are special tokens; message text is tokenized as plain text, so a message
    cannot forge a turn marker.
    """

    def special(text: str) -> list[int]:
        return llm.tokenize(text.encode(), add_bos=False, special=True)

    def plain(text: str) -> list[int]:
        return llm.tokenize(text.encode(), add_bos=False, special=False) if text else []

    system = "\n\n".join(m.content for m in messages if m.role == "system")
    tokens = [llm.token_bos()]
    for msg in (m for m in messages if m.role != "system"):
        content = msg.content
        if system and msg.role == "user":
            content, system = f"{system}\n\n{content}", ""
        role = "model" if msg.role == "assistant" else "user"
        tokens += special(f"<start_of_turn>{role}\n") + plain(content) + special("<end_of_turn>\n")
    if system:  # no user message to fold the system prompt into
        tokens += special("<start_of_turn>user\n") + plain(system) + special("<end_of_turn>\n")
    return tokens + special("<start_of_turn>model\n") + plain(assistant_prefix)


def _prefill(llm: llama_cpp.Llama, prompt: list[int], stop: threading.Event) -> bool:
    """Evaluate all but the last prompt token in chunks; False if stopped meanwhile.

    ``Llama.generate`` then finds the prompt cached and evaluates only the last token.
    Tokens already in the KV cache from an earlier call (a shared prefix) are kept.
    """
    cached = 0
    for have, want in zip(llm.eval_tokens, prompt[:-1], strict=False):
        if have != want:
            break
        cached += 1
    llm.n_tokens = min(llm.n_tokens, cached)
    for start in range(cached, len(prompt) - 1, PROMPT_CHUNK):
        if stop.is_set():
            return False
        llm.eval(prompt[start : min(start + PROMPT_CHUNK, len(prompt) - 1)])
    return not stop.is_set()


def _grammar(llm: llama_cpp.Llama, text: str) -> llama_cpp.LlamaGrammar:
    """A checked grammar: llama.cpp reports a bad one as NULL, which would crash later."""
    sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, text.encode(), b"root")
    if not sampler:
        raise ProviderError("llama.cpp rejected the GBNF grammar (its parse error went to stderr)")
    llama_cpp.llama_sampler_free(sampler)
    return llama_cpp.LlamaGrammar.from_string(text, verbose=False)


class _StopText:
    """Holds back text that may be the start of a stop sequence."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""

    def push(self, text: str, final: bool = False) -> tuple[str, bool]:
        """Add text; return what is safe to emit and whether a stop sequence was hit."""
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.pending = self.pending[: min(hits)], ""
            return out, True
        keep = 0 if final else _held_back(self.pending, self.stops)
        out = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(out) :]
        return out, False


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of a stop sequence."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


def _map_error(exc: Exception) -> Exception:
    """Map llama-cpp-python failures to Cortex's provider errors (the one place to do so)."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, ValueError) and "load model" in str(exc):
        return ModelNotFound(f"llama.cpp could not load the model file: {exc}")
    return ProviderError(f"local llama.cpp generation failed: {type(exc).__name__}: {exc}")
