"""In-memory backends for unit tests: scripted answers, failures and streams, no I/O."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from router.backends.base import (
    BackendError,
    Completion,
    GenerationParams,
    Prompt,
    StreamEvent,
    TierState,
)

CONFIDENT = [-0.01, -0.02, -0.01]  # mean_prob ~0.99
UNSURE = [-2.0, -3.0, -2.5]  # mean_prob ~0.08


@dataclass
class Script:
    """One call's result: an answer (text and logprobs), or a failure; a stream may break
    after `break_after` text events."""

    text: str = "fake answer"
    logprobs: list[float] | None = field(default_factory=lambda: list(CONFIDENT))
    error: BackendError | None = None
    break_after: int | None = None


@dataclass
class FakeBackend:
    """The Backend contract over a list of scripts, one per call (the last one repeats)."""

    name: str
    scripts: list[Script] = field(default_factory=lambda: [Script()])
    model: str = ""
    local: bool = False  # counts tokens, as a local model does
    queue_depth: int = 0
    state: TierState = "ready"
    calls: int = 0
    streams_closed: int = 0
    closed: bool = False

    def __post_init__(self) -> None:
        self.model = self.model or f"{self.name}-model"

    def _next(self) -> Script:
        script = self.scripts[min(self.calls, len(self.scripts) - 1)]
        self.calls += 1
        return script

    async def count_tokens(self, prompt: Prompt) -> int | None:
        return sum(len(text.split()) for text in prompt.texts) if self.local else None

    async def complete(self, prompt: Prompt, params: GenerationParams) -> Completion:
        script = self._next()
        if script.error is not None:
            raise script.error
        words = script.text.split()
        return Completion(
            text=script.text,
            finish_reason="stop",
            prompt_tokens=len(prompt.texts),
            completion_tokens=len(words),
            model=self.model,
            token_logprobs=None if script.logprobs is None else list(script.logprobs),
            ttft_ms=1.0,
            usage_source="counted" if self.local else "reported",
        )

    async def stream(
        self, prompt: Prompt, params: GenerationParams
    ) -> AsyncGenerator[StreamEvent, None]:
        script = self._next()
        try:
            if script.error is not None:
                raise script.error
            words = script.text.split()
            for index, word in enumerate(words):
                if script.break_after is not None and index >= script.break_after:
                    raise BackendError("error", f"tier '{self.name}' broke mid-stream")
                yield StreamEvent(text=word if index == 0 else f" {word}")
            yield StreamEvent(
                finish_reason="stop",
                prompt_tokens=len(prompt.texts),
                completion_tokens=len(words),
                model=self.model,
                usage_source="counted" if self.local else "reported",
            )
        finally:
            self.streams_closed += 1

    async def embed(self, body: Any) -> dict[str, Any]:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [0.1, 0.2]} for i in range(len(inputs))
        ]
        usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
        return {"object": "list", "data": data, "model": self.model, "usage": usage}

    async def aclose(self) -> None:
        self.closed = True


@dataclass(frozen=True)
class FixedRouter:
    """A prompt router (routing.Scorer) that gives every prompt the same score."""

    name: str
    value: float
    version: str = "v1"

    def score(self, prompt: str) -> float:
        return self.value
