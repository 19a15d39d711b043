"""The server in-process over in-memory fake backends (tests/unit): a default policy, the
`serve` fixture's type (tests/unit/conftest.py) and readers of what it answered and recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.support.cascade import read_ledger

POLICY = """
tiers:
  small: {type: llama_cpp}
  large: {type: openai, model: m, price: {input_per_1m: 1.0, output_per_1m: 2.0}}
routes:
  auto:
    cascade:
      - {tier: small, acceptance: {threshold: 0.5}}
      - {tier: large}
"""
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "What is 2 + 2?"}]}
Serve = Callable[..., Any]


async def sse(response: Any) -> tuple[str, list[dict[str, Any]]]:
    """The text of a streamed answer and its chunks (until [DONE])."""
    chunks = []
    async for line in response.content:
        if line.startswith(b"data: ") and line.strip() != b"data: [DONE]":
            chunks.append(json.loads(line[6:]))
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c.get("choices"))
    return text, chunks


def record_of(ledger: str, request_id: str) -> dict[str, Any]:
    (record,) = [r for r in read_ledger(ledger) if r["request_id"] == request_id]
    return record
