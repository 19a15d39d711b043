"""A cached answer: the Completion a tier gave, which tier, and what it cost.

Stored as JSON (never pickle: a shared Redis must not be a way to run code in the gateway),
and read back defensively: anything malformed is a miss. A streamed answer is folded into
the same whole Completion as it passes (`Fold`), so one entry serves a later request
streamed or not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from router.backends.base import Completion, StreamEvent, TokenLogprob

_FORMAT = 1
_NOT_STORED = frozenset({"cancelled", "error"})  # an answer cut short is not served again


@dataclass(frozen=True, slots=True)
class Entry:
    completion: Completion
    tier: str
    cost_usd: float  # what the cascade paid for it (what a hit saves)
    counterfactual_usd: float  # what it would have cost on the route's reference tier
    stored_at: float = field(default_factory=time.time)

    def dumps(self) -> bytes:
        c = self.completion
        return orjson.dumps(
            {
                "v": _FORMAT,
                "tier": self.tier,
                "cost_usd": self.cost_usd,
                "counterfactual_usd": self.counterfactual_usd,
                "stored_at": self.stored_at,
                "text": c.text,
                "finish_reason": c.finish_reason,
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                "cached_tokens": c.cached_tokens,
                "reasoning_tokens": c.reasoning_tokens,
                "model": c.model,
                "raw": c.raw,
                "logprobs": c.logprobs,
            }
        )

    @classmethod
    def loads(cls, data: bytes) -> Entry | None:
        """The entry, or None when `data` is not one this version wrote."""
        try:
            found = orjson.loads(data)
            if not isinstance(found, dict) or found.get("v") != _FORMAT:
                return None
            raw, logprobs = found["raw"], found["logprobs"]
            if not (raw is None or isinstance(raw, dict)):
                return None
            if not (logprobs is None or isinstance(logprobs, list)):
                return None
            completion = Completion(
                text=_typed(found["text"], str),
                finish_reason=_typed(found["finish_reason"], str),
                prompt_tokens=_typed(found["prompt_tokens"], int),
                completion_tokens=_typed(found["completion_tokens"], int),
                model=_typed(found["model"], str),
                raw=raw,
                cached_tokens=_typed(found["cached_tokens"], int),
                reasoning_tokens=_typed(found["reasoning_tokens"], int),
                logprobs=logprobs,
            )
            return cls(
                completion,
                tier=_typed(found["tier"], str),
                cost_usd=float(found["cost_usd"]),
                counterfactual_usd=float(found["counterfactual_usd"]),
                stored_at=float(found["stored_at"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


def _typed(value: Any, kind: type[Any]) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"expected {kind.__name__}")
    return value


def storable(completion: Completion) -> bool:
    """An answer worth serving again: complete, and in a shape a hit can replay."""
    if completion.finish_reason in _NOT_STORED:
        return False
    raw = completion.raw
    return raw is None or raw.get("object") in ("chat.completion", "text_completion")


class Fold:
    """A streamed answer gathered as it passes into the whole Completion it amounts to: text
    and logprobs, or an upstream's chat chunks (content, tool-call deltas merged by index,
    refusal, logprobs, finish and usage) rebuilt as the chat.completion body they spell.
    An answer it cannot rebuild exactly (several choices, other event kinds) is not kept."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._text: list[str] = []
        self._refusal: list[str] = []
        self._logprobs: list[TokenLogprob] | None = None
        self._calls: dict[int, dict[str, Any]] = {}
        self._object: str | None = None  # the upstream's chunks' kind, when it sent any
        self._head: dict[str, Any] = {}
        self._finish: str | None = None
        self._usage: tuple[int, int] = (0, 0)
        self._details: tuple[int, int] = (0, 0)  # cached, reasoning tokens
        self._usage_body: dict[str, Any] | None = None
        self._broken = False

    def add(self, event: StreamEvent) -> None:
        if self._broken:
            return
        if event.raw is None:
            self._text.append(event.text)
            self._extend(event.logprobs)
        else:
            self._chunk(event.raw)
        if event.finish_reason:
            self._finish = event.finish_reason
            self._usage = (event.prompt_tokens or 0, event.completion_tokens or 0)
            self._details = (event.cached_tokens, event.reasoning_tokens)

    def _extend(self, logprobs: list[TokenLogprob] | None) -> None:
        if logprobs:
            self._logprobs = [*(self._logprobs or []), *logprobs]

    def _chunk(self, chunk: dict[str, Any]) -> None:
        kind = chunk.get("object")
        if kind not in ("chat.completion.chunk", "text_completion") or (
            self._object not in (None, kind)
        ):
            self._broken = True
            return
        self._object = kind
        self._head = {key: chunk[key] for key in ("id", "created", "model") if key in chunk}
        if isinstance(usage := chunk.get("usage"), dict):
            self._usage_body = usage
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                self._broken = True
                return
            self._choice(choice, kind == "chat.completion.chunk")

    def _choice(self, choice: dict[str, Any], chat: bool) -> None:
        if choice.get("finish_reason"):
            self._finish = choice["finish_reason"]
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
            self._extend(logprobs["content"])
        elif logprobs is not None and not chat:
            self._broken = True  # legacy completions logprobs do not fold simply
        if not chat:
            self._text.append(str(choice.get("text") or ""))
            return
        delta = choice.get("delta") or {}
        self._text.append(str(delta.get("content") or ""))
        if delta.get("refusal"):
            self._refusal.append(str(delta["refusal"]))
        for call in delta.get("tool_calls") or ():
            self._tool_call(call)

    def _tool_call(self, delta: dict[str, Any]) -> None:
        index = delta.get("index", 0)
        if not isinstance(index, int):
            self._broken = True
            return
        call = self._calls.setdefault(
            index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        for key in ("id", "type"):
            if delta.get(key):
                call[key] = delta[key]
        function = delta.get("function") or {}
        call["function"]["name"] += function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""

    def completion(self) -> Completion | None:
        """The whole answer, or None if it never finished or could not be folded."""
        if self._broken or self._finish is None:
            return None
        text = "".join(self._text)
        prompt_tokens, completion_tokens = self._usage
        raw = None
        if self._object is not None:
            raw = self._body(text)
            usage = raw.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens") or prompt_tokens)
            completion_tokens = int(usage.get("completion_tokens") or completion_tokens)
        return Completion(
            text=text,
            finish_reason=self._finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            model=str(self._head.get("model") or self._model),
            raw=raw,
            cached_tokens=self._details[0],
            reasoning_tokens=self._details[1],
            logprobs=self._logprobs if raw is None else None,
        )

    def _body(self, text: str) -> dict[str, Any]:
        chat = self._object == "chat.completion.chunk"
        choice: dict[str, Any] = {"index": 0, "finish_reason": self._finish, "logprobs": None}
        if self._logprobs is not None:
            choice["logprobs"] = {"content": self._logprobs, "refusal": None}
        if chat:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": text or None,
                "refusal": "".join(self._refusal) or None,
            }
            if self._calls:
                message["tool_calls"] = [self._calls[i] for i in sorted(self._calls)]
            choice["message"] = message
        else:
            choice["text"] = text
        body: dict[str, Any] = {
            "id": self._head.get("id", ""),
            "object": "chat.completion" if chat else "text_completion",
            "created": self._head.get("created", int(time.time())),
            "model": self._head.get("model", self._model),
            "choices": [choice],
        }
        if self._usage_body is not None:
            body["usage"] = self._usage_body
        return body
