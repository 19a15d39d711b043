"""Structured output on the local tier: decode speed under a JSON Schema grammar, against
the same tier without one and against applying the grammar to the whole vocabulary each
token (what a plain llama.cpp grammar sampler does). In-process, same prompt, greedy.

    python -m bench.grammar
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from bench.common import append_results
from router.backends import sampling
from router.backends.base import GenerationParams, Message, Prompt
from router.backends.local_llama import LlamaCppTier, LocalLlamaBackend
from router.output_format import OutputFormat

ROUNDS = 5
PROMPT = Prompt(messages=(Message("user", "Describe three people as JSON: name, age, city."),))
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "people": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "age": {"type": "integer"},
                    "city": {"type": "string"},
                },
                "required": ["name", "age", "city"],
            },
        }
    },
    "required": ["people"],
}


async def ms_per_token(backend: LocalLlamaBackend, output: OutputFormat | None) -> float:
    params = GenerationParams(max_tokens=96, temperature=0.0, output=output)
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        answer = await backend.complete(PROMPT, params)
        times.append((time.perf_counter() - started) * 1000 / max(answer.completion_tokens, 1))
    return float(np.median(times))


async def main() -> None:
    backend = await LocalLlamaBackend.load("local", LlamaCppTier(type="llama_cpp"))
    output = OutputFormat.of("json_schema", SCHEMA)
    plain = await ms_per_token(backend, None)
    gated = await ms_per_token(backend, output)
    top_k = sampling.TOP_K
    sampling.TOP_K = backend._n_vocab  # the whole vocabulary filtered every token
    whole = await ms_per_token(backend, output)
    sampling.TOP_K = top_k
    await backend.aclose()
    append_results(
        "(i) Structured output on the local tier",
        ["decode", "ms/token (median of 5)", "vs. no grammar"],
        [
            ["no grammar", f"{plain:.2f}", "1.00x"],
            [
                "JSON Schema grammar, 40 likeliest filtered first",
                f"{gated:.2f}",
                f"{gated / plain:.2f}x",
            ],
            [
                "JSON Schema grammar over the whole vocabulary",
                f"{whole:.2f}",
                f"{whole / plain:.2f}x",
            ],
        ],
        "SmolLM2-135M Q4_1, greedy, 96 tokens at most, in-process (router/backends/grammar.py).",
    )


if __name__ == "__main__":
    asyncio.run(main())
