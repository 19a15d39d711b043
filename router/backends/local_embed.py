"""Embeddings from the in-process model: a second llama.cpp context on the tier's own loaded
model (llama.cpp runs many contexts on one model: no second copy of the weights), in
embedding mode, mean-pooled and L2-normalised.

Built only for a `llama_cpp` tier that serves `embeddings` (`embeddings: true`): its KV
cache costs memory a generating tier does not need. One request embeds at a time on the
context's own thread; up to the tier's `max_queue` wait, the rest are shed.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from router.backends.base import BackendError


class LocalEmbedder:
    """OpenAI embeddings answers from one llama.cpp embedding context."""

    def __init__(
        self, tier: str, model: str, llama: _Context, executor: ThreadPoolExecutor, max_queue: int
    ) -> None:
        self._tier = tier
        self._model = model
        self._llama = llama
        self._executor = executor
        self._max_queue = max_queue
        self._lock = asyncio.Lock()
        self._holding = 0  # requests embedding or waiting to
        self.dimensions = llama.n_embd()

    @classmethod
    async def load(
        cls, tier: str, model: str, generator: Any, *, n_ctx: int, n_threads: int, max_queue: int
    ) -> LocalEmbedder:
        """An embedding context on `generator`'s model (a llama_cpp.Llama, which must outlive
        this embedder)."""

        def build() -> _Context:
            import llama_cpp
            from llama_cpp import _internals

            params = llama_cpp.llama_context_default_params()
            params.n_ctx = params.n_batch = params.n_ubatch = n_ctx  # one input, one batch
            params.n_threads = params.n_threads_batch = n_threads
            params.embeddings = True
            params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
            context = _internals.LlamaContext(model=generator._model, params=params, verbose=False)
            batch = _internals.LlamaBatch(n_tokens=n_ctx, embd=0, n_seq_max=1, verbose=False)
            return _Context(llama_cpp, generator, context, batch, n_ctx)

        executor = ThreadPoolExecutor(1, thread_name_prefix=f"llama-{tier}-embed")
        context = await asyncio.wrap_future(executor.submit(build))
        return cls(tier, model, context, executor, max_queue)

    def _texts(self, body: Mapping[str, Any]) -> list[str]:
        value = body.get("input")
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
            raise BackendError(
                "unsupported", f"tier '{self._tier}' embeds text, not another model's token ids"
            )
        dimensions = body.get("dimensions")
        if dimensions is not None and dimensions != self.dimensions:
            raise BackendError(
                "unsupported",
                f"tier '{self._tier}' embeds in {self.dimensions} dimensions, not {dimensions}",
            )
        return texts

    async def embed(self, body: Mapping[str, Any]) -> dict[str, Any]:
        texts = self._texts(body)
        if self._holding > self._max_queue:  # one embedding runs, max_queue wait
            raise BackendError(
                "shed", f"tier '{self._tier}' is saturated ({self._max_queue} embeddings queued)"
            )
        self._holding += 1
        try:
            async with self._lock:
                future = self._executor.submit(self._embed, texts)
                vectors, tokens = await asyncio.wrap_future(future)
        finally:
            self._holding -= 1
        base64_wanted = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": _base64(vector) if base64_wanted else vector,
            }
            for index, vector in enumerate(vectors)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": self._model, "usage": usage}

    def _embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        vectors, tokens = [], 0
        for text in texts:
            vector, count = self._llama.embed(text)
            if vector is None:
                raise BackendError(
                    "rejected",
                    f"an input is {count} tokens; tier '{self._tier}' embeds at most "
                    f"{self._llama.n_ctx} (its embedding_n_ctx)",
                )
            vectors.append(vector)
            tokens += count
        return vectors, tokens

    async def aclose(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._llama.close()


class _Context:
    """One llama.cpp embedding context and its batch (used on one thread)."""

    def __init__(self, lib: Any, generator: Any, context: Any, batch: Any, n_ctx: int) -> None:
        self._lib = lib
        self._generator = generator
        self._context = context
        self._batch = batch
        self.n_ctx = n_ctx

    def n_embd(self) -> int:
        return int(self._generator.n_embd())

    def embed(self, text: str) -> tuple[list[float] | None, int]:
        """The text's unit-length mean-pooled embedding and its tokens (None: too long)."""
        tokens = self._generator.tokenize(text.encode(), add_bos=True, special=False)
        if len(tokens) > self.n_ctx:
            return None, len(tokens)
        self._context.kv_cache_clear()
        self._batch.reset()
        self._batch.add_sequence(tokens, 0, True)
        self._context.decode(self._batch)
        pointer = self._lib.llama_get_embeddings_seq(self._context.ctx, 0)
        vector = np.ctypeslib.as_array(pointer, shape=(self.n_embd(),)).astype(np.float64)
        norm = float(np.linalg.norm(vector))
        return (vector / norm if norm else vector).tolist(), len(tokens)

    def close(self) -> None:
        self._context.close()
        self._batch.close()


def _base64(vector: list[float]) -> str:
    """OpenAI's base64 encoding: the float32 little-endian bytes."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
