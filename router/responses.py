"""OpenAI response bodies and server-sent-event chunks."""

from __future__ import annotations

import time
from typing import Any

import orjson

from router.backends.base import Completion


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _finish(reason: str) -> str:
    """Our internal 'cancelled' is not an OpenAI finish reason."""
    return "length" if reason == "cancelled" else reason


def completion_body(request_id: str, completion: Completion, chat: bool) -> dict[str, Any]:
    """Whole answer. A pass-through upstream body is returned as the upstream sent it."""
    if completion.raw is not None:
        return completion.raw
    choice: dict[str, Any] = {
        "index": 0,
        "finish_reason": _finish(completion.finish_reason),
        "logprobs": None,
    }
    if chat:
        choice["message"] = {"role": "assistant", "content": completion.text}
    else:
        choice["text"] = completion.text
    return {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{request_id}",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": completion.model,
        "choices": [choice],
        "usage": _usage(completion.prompt_tokens, completion.completion_tokens),
    }


class ChunkWriter:
    """Builds `data: {...}\\n\\n` lines for one streamed answer."""

    def __init__(self, request_id: str, model: str, chat: bool) -> None:
        self._id = f"{'chatcmpl' if chat else 'cmpl'}-{request_id}"
        self._model = model
        self._chat = chat
        self._created = int(time.time())
        self._role_sent = False

    def _frame(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body = {
            "id": self._id,
            "object": "chat.completion.chunk" if self._chat else "text_completion",
            "created": self._created,
            "model": self._model,
            "choices": choices,
            **extra,
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"

    def text(self, piece: str) -> bytes:
        if not self._chat:
            return self._frame([{"index": 0, "text": piece, "finish_reason": None}])
        delta: dict[str, Any] = {"content": piece}
        if not self._role_sent:
            delta["role"] = "assistant"
            self._role_sent = True
        return self._frame([{"index": 0, "delta": delta, "finish_reason": None}])

    def finish(self, reason: str) -> bytes:
        if not self._chat:
            return self._frame([{"index": 0, "text": "", "finish_reason": _finish(reason)}])
        delta: dict[str, Any] = {} if self._role_sent else {"role": "assistant"}
        return self._frame([{"index": 0, "delta": delta, "finish_reason": _finish(reason)}])

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        return self._frame([], usage=_usage(prompt_tokens, completion_tokens))

    @staticmethod
    def error(body: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(body) + b"\n\n"

    @staticmethod
    def done() -> bytes:
        return b"data: [DONE]\n\n"
