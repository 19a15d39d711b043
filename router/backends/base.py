"""The backend contract and the values that cross it."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from router.redact import redact


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["system", "developer", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Prompt:
    """What to answer: a chat (`messages`) or a legacy completion prompt (`text`)."""

    messages: tuple[Message, ...] = ()
    text: str | None = None

    @property
    def is_chat(self) -> bool:
        return self.text is None

    @property
    def texts(self) -> list[str]:
        """The text the model reads, without roles or template."""
        return [self.text] if self.text is not None else [m.content for m in self.messages]

    def char_count(self) -> int:
        return sum(len(text) for text in self.texts)

    @property
    def question(self) -> str:
        """What classifiers score: the last user message (or the completion prompt)."""
        if self.text is not None:
            return self.text
        users = [m.content for m in self.messages if m.role == "user"]
        return users[-1] if users else (self.messages[-1].content if self.messages else "")


@dataclass(frozen=True, slots=True)
class GenerationParams:
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    user: str | None = None


@dataclass(slots=True)
class Completion:
    """One finished answer from one tier."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    token_logprobs: list[float] | None = None
    ttft_ms: float | None = None
    raw: dict[str, Any] | None = None  # the upstream body, returned as-is on pass-through


@dataclass(slots=True)
class StreamEvent:
    """A piece of a streamed answer; the last one carries finish_reason and usage."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Outcome = Literal["error", "timeout", "shed", "unavailable", "rejected"]


class BackendError(Exception):
    """A tier could not answer. `kind` drives the cascade; `status` is the upstream's, if any."""

    def __init__(self, kind: Outcome, message: str, status: int | None = None) -> None:
        message = redact(message)  # upstream text can echo credentials
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status


class Backend(Protocol):
    """What the cascade needs from a tier."""

    name: str
    model: str

    async def complete(self, prompt: Prompt, params: GenerationParams) -> Completion: ...

    def stream(
        self, prompt: Prompt, params: GenerationParams
    ) -> AsyncGenerator[StreamEvent, None]: ...

    async def aclose(self) -> None: ...
