"""Token counts a provider will bill where it did not say them: bounded estimates, learned
from the same tier's reported usage.

An answer the client abandoned, a stream cut off or stalled, or an upstream that sends no
usage leaves an attempt without the provider's counts. The tier still bills: the prompt it
read, and what it generated until it stopped. The estimates here are what a record says
instead (`usage_source: estimated`):

- prompt tokens: the request's text at 4 UTF-8 bytes a token, OpenAI's chat framing (4 a
  message, 3 to prime the answer), its tools, tool calls and schemas (bytes / 4) and its
  media at their bound (router/api/billable.py), scaled by the tier's observed ratio of
  reported prompt tokens to that estimate (over its last 256 reported answers);
- output of a stream: the chunks that came, times the tier's observed tokens per chunk
  (1 for OpenAI, vLLM and llama.cpp's server until observed otherwise); a stream its client
  left also what the tier generated between its last chunk and the close, at its observed
  decode rate (a provider generates until it sees the connection closed);
- output of a whole answer the client left: the time it generated (elapsed less the tier's
  observed time to first token) at its observed decode rate; with nothing observed yet, the
  request's output bound. Never above the bound (max_tokens, times `n`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from router.backends.base import BackendError, StreamEvent, upstream_id
from router.backends.prompt_tokens import estimate_tokens
from router.request import ClientRequest

_WEIGHT = 0.1  # of each new observation in a tier's running averages
DRAIN_S = 2.0  # how long a stream the client left is read on for the usage still to come


def _average(old: float | None, new: float) -> float:
    return new if old is None else old + _WEIGHT * (new - old)


_MESSAGE_TOKENS, _PRIMING_TOKENS = 4, 3  # OpenAI's chat framing, by its documented count
_RATIO_WINDOW = 256  # reported answers a tier's prompt ratio is taken over


def prompt_basis(request: ClientRequest) -> int:
    """The request's input tokens by the 4-bytes rule, chat framing and media at their
    bound."""
    billable = request.billable
    prompt = request.prompt
    framing = _MESSAGE_TOKENS * len(prompt.messages) + _PRIMING_TOKENS if prompt.is_chat else 0
    text = math.ceil(billable.text_bytes / 4)
    return estimate_tokens(prompt) + framing + text + billable.media_tokens


def overflow(request: ClientRequest, window: int | None) -> str | None:
    """Why the request cannot fit a tier's context window (its prompt, counted or estimated,
    and its output bound), or None when it fits or the tier declares no window."""
    if window is None:
        return None
    needed = (request.prompt_tokens or prompt_basis(request)) + request.output_bound
    return None if needed <= window else f"context_window ({needed} > {window} tokens)"


@dataclass(slots=True)
class TierUsage:
    """What one tier's reported usage taught: a window of prompts, running averages."""

    # (prompt_basis, reported prompt tokens) of the last answers, and their sums: the
    # ratio of sums estimates a sum of prompts without bias from their mix of sizes
    prompts: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=_RATIO_WINDOW))
    basis_sum: int = 0
    reported_sum: int = 0
    tokens_per_chunk: float | None = None  # reported completion tokens / content chunks
    first_token_s: float | None = None
    tokens_per_s: float | None = None  # decoding, after the first token

    def observe(
        self,
        request: ClientRequest,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        chunks: int = 0,
        first_token_s: float | None = None,
        seconds: float | None = None,
    ) -> None:
        """One answer the tier reported usage for."""
        basis = prompt_basis(request)
        if basis > 0 and prompt_tokens > 0:
            if len(self.prompts) == self.prompts.maxlen:
                old_basis, old_reported = self.prompts[0]
                self.basis_sum -= old_basis
                self.reported_sum -= old_reported
            self.prompts.append((basis, prompt_tokens))
            self.basis_sum += basis
            self.reported_sum += prompt_tokens
        if chunks > 0 and completion_tokens > 0:
            self.tokens_per_chunk = _average(self.tokens_per_chunk, completion_tokens / chunks)
        if first_token_s is not None:
            self.first_token_s = _average(self.first_token_s, first_token_s)
            if seconds is not None and seconds > first_token_s and completion_tokens > 1:
                rate = (completion_tokens - 1) / (seconds - first_token_s)
                self.tokens_per_s = _average(self.tokens_per_s, rate)

    @property
    def prompt_ratio(self) -> float:
        return self.reported_sum / self.basis_sum if self.basis_sum else 1.0

    def prompt(self, request: ClientRequest) -> int:
        return math.ceil(prompt_basis(request) * self.prompt_ratio)

    def streamed(self, request: ClientRequest, chunks: int, quiet_s: float = 0.0) -> int:
        """Output tokens of a stream that sent `chunks` content chunks, and was then still
        open for `quiet_s` (the tier generating on, at its decode rate)."""
        after = quiet_s * self.tokens_per_s if self.tokens_per_s is not None else 0.0
        found = round(chunks * (self.tokens_per_chunk or 1.0) + after)
        return min(found, request.output_bound)

    def elapsed(self, request: ClientRequest, seconds: float) -> int:
        """Output tokens of a whole answer generated for `seconds` before it was left."""
        bound = request.output_bound
        if self.tokens_per_s is None or self.first_token_s is None:
            return bound
        generating = max(seconds - self.first_token_s, 0.0)
        return min(math.ceil(generating * self.tokens_per_s * request.choices), bound)


@dataclass(slots=True)
class UsageModel:
    """Every tier's `TierUsage` (one per server: a reload keeps what was learned)."""

    tiers: dict[str, TierUsage] = field(default_factory=dict)

    def of(self, tier: str) -> TierUsage:
        found = self.tiers.get(tier)
        if found is None:
            found = self.tiers[tier] = TierUsage()
        return found


@dataclass(slots=True)
class Meter:
    """What one live stream passed on, as it passed: content chunks, whether the tier said
    how it finished, and the usage it reported (before it ended, should it break)."""

    request: ClientRequest
    tier: TierUsage
    chunks: int = 0
    finished: bool = False  # a chunk carried a finish_reason: only the usage may follow
    left: bool = False  # the client left before the end
    reported: tuple[int, int] | None = None  # (prompt, completion) as the tier sent them
    answer_id: str | None = None  # the provider's id of the answer, from its chunks
    last_at: float = field(default_factory=time.perf_counter)  # when the last chunk came

    def add(self, event: StreamEvent) -> None:
        if self.answer_id is None and event.raw is not None:
            self.answer_id = upstream_id(event.raw)
        if event.finish_reason is None and event.prompt_tokens is not None:
            self.reported = (event.prompt_tokens, event.completion_tokens or 0)
        choices = event.raw.get("choices") if event.raw is not None else None
        if event.text or (choices and _generated(choices)):
            self.chunks += 1
            self.last_at = time.perf_counter()
        if choices and any(isinstance(c, dict) and c.get("finish_reason") for c in choices):
            self.finished = True

    def estimate(self, prompt_tokens: int = 0, completion_tokens: int = 0) -> dict[str, Any]:
        """The attempt's token fields for a stream that ended without the tier's final usage:
        what it reported on the way, else estimates (never below what is given)."""
        if self.reported is not None:
            prompt, completion = self.reported
            return {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "usage_source": "reported",
            }
        return {
            "prompt_tokens": max(prompt_tokens, self.tier.prompt(self.request)),
            "completion_tokens": max(
                completion_tokens, self.tier.streamed(self.request, self.chunks)
            ),
            "usage_source": "estimated",
        }

    def billed(self, final: StreamEvent | None) -> dict[str, Any]:
        """An attempt's token fields and the provider's answer id: the final event's usage
        (filled in from what was metered when the tier sent none), or, for a stream that
        ended without one, what was metered."""
        if final is None:
            found = self.estimate()
        else:
            found = {
                "prompt_tokens": final.prompt_tokens or 0,
                "completion_tokens": final.completion_tokens or 0,
                "cached_tokens": final.cached_tokens,
                "reasoning_tokens": final.reasoning_tokens,
                "usage_source": final.usage_source,
            }
            if final.usage_source == "estimated":
                found.update(self.estimate(found["prompt_tokens"], found["completion_tokens"]))
        found["upstream_id"] = (final.upstream_id if final else None) or self.answer_id
        return found

    def learn(self, final: StreamEvent, seconds: float, first_token_s: float) -> None:
        """A stream the tier reported usage for: what it teaches about the tier."""
        self.tier.observe(
            self.request,
            final.prompt_tokens or 0,
            final.completion_tokens or 0,
            chunks=self.chunks,
            first_token_s=first_token_s,
            seconds=seconds,
        )

    async def drain(self, stream: AsyncIterator[StreamEvent]) -> StreamEvent | None:
        """Read a stream the client left on to its final event (its usage), for at most
        DRAIN_S; None when it did not come."""
        try:
            async with asyncio.timeout(DRAIN_S):
                async for event in stream:
                    self.add(event)
                    if event.finish_reason:
                        return event
        except (TimeoutError, BackendError, StopAsyncIteration):
            return None
        return None


def _generated(choices: list[Any]) -> bool:
    """Whether a chunk's choices carry generated output (text, tool-call deltas, refusal)."""
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict) and any(
            delta.get(key) for key in ("content", "tool_calls", "function_call", "refusal")
        ):
            return True
        if choice.get("text"):
            return True
    return False
