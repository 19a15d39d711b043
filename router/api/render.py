"""OpenAI response bodies and server-sent-event chunks."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from router.backends.base import Completion, TokenLogprob
from router.errors import APIError


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _finish(reason: str) -> str:
    """Our internal 'cancelled' is not an OpenAI finish reason."""
    return "length" if reason == "cancelled" else reason


def _logprobs(tokens: list[TokenLogprob] | None, chat: bool) -> dict[str, Any] | None:
    """Token logprobs as chat completions (`content`) or legacy completions list them."""
    if tokens is None:
        return None
    if chat:
        return {"content": tokens, "refusal": None}
    offsets, at = [], 0
    for token in tokens:
        offsets.append(at)
        at += len(token["token"])
    return {
        "tokens": [token["token"] for token in tokens],
        "token_logprobs": [token["logprob"] for token in tokens],
        "top_logprobs": [
            {alt["token"]: alt["logprob"] for alt in token["top_logprobs"]} for token in tokens
        ],
        "text_offset": offsets,
    }


def completion_body(request_id: str, completion: Completion, chat: bool) -> dict[str, Any]:
    """Whole answer. A pass-through upstream body is returned as the upstream sent it."""
    if completion.raw is not None:
        return completion.raw
    choice: dict[str, Any] = {
        "index": 0,
        "finish_reason": _finish(completion.finish_reason),
        "logprobs": _logprobs(completion.logprobs, chat),
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


class StreamWriter(Protocol):
    """The server-sent events of one streamed answer, in the client's API (chat completions,
    completions: `ChunkWriter`; Responses: router/api/responses/render.py)."""

    def piece(self, text: str, logprobs: list[TokenLogprob] | None = None) -> bytes:
        """Answer text from the local tier (and its tokens' logprobs, when asked for)."""
        ...

    def chunk(self, chunk: Mapping[str, Any]) -> bytes:
        """An upstream's chat completions chunk as it sent it."""
        ...

    def whole(self, body: Mapping[str, Any]) -> bytes:
        """A whole upstream answer, as the events a stream of it would have sent."""
        ...

    def end(self, finish_reason: str | None, tokens: tuple[int, int]) -> bytes:
        """The answer ended: (prompt, completion) tokens when no upstream chunk said them."""
        ...

    def failed(self, error: APIError) -> bytes:
        """The answer broke after its first byte."""
        ...


def as_chunks(body: Mapping[str, Any], chat: bool) -> list[dict[str, Any]]:
    """A whole upstream answer as the chunks a stream of it would have sent (tool calls,
    refusal and logprobs included), the usage last."""
    choices = []
    for choice in body.get("choices") or ():
        streamed = {key: value for key, value in choice.items() if key != "message"}
        if chat:
            message = dict(choice.get("message") or {})
            calls = message.get("tool_calls")
            if calls:
                message["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls)]
            streamed["delta"] = message
        choices.append(streamed)
    head = {key: value for key, value in body.items() if key not in ("choices", "usage")}
    head["object"] = "chat.completion.chunk" if chat else "text_completion"
    chunks = [{**head, "choices": choices}]
    if body.get("usage"):
        chunks.append({**head, "choices": [], "usage": body["usage"]})
    return chunks


class ChunkWriter:
    """Chat completions and completions chunks (`data: {...}` lines) for one answer. An
    upstream's chunks go as it sent them, but for the usage the gateway asked for on its own
    account: kept only when the client asked for it too."""

    def __init__(self, request_id: str, model: str, chat: bool, include_usage: bool) -> None:
        self._id = f"{'chatcmpl' if chat else 'cmpl'}-{request_id}"
        self._model = model
        self._chat = chat
        self._include_usage = include_usage
        self._created = int(time.time())
        self._role_sent = False
        self._passed_on = False  # the upstream's own chunks went (its finish and usage too)

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

    def piece(self, text: str, logprobs: list[TokenLogprob] | None = None) -> bytes:
        choice: dict[str, Any] = {"index": 0, "finish_reason": None}
        if logprobs is not None:
            choice["logprobs"] = _logprobs(logprobs, self._chat)
        if not self._chat:
            return self._frame([{**choice, "text": text}])
        delta: dict[str, Any] = {"content": text}
        if not self._role_sent:
            delta["role"] = "assistant"
            self._role_sent = True
        return self._frame([{**choice, "delta": delta}])

    def chunk(self, chunk: Mapping[str, Any]) -> bytes:
        self._passed_on = True
        if not self._include_usage and "usage" in chunk:
            if not chunk.get("choices"):
                return b""
            chunk = {key: value for key, value in chunk.items() if key != "usage"}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def whole(self, body: Mapping[str, Any]) -> bytes:
        return b"".join(self.chunk(chunk) for chunk in as_chunks(body, self._chat))

    def end(self, finish_reason: str | None, tokens: tuple[int, int]) -> bytes:
        frames = b""
        if not self._passed_on:
            frames += self._finish(finish_reason or "stop")
            if self._include_usage:
                frames += self._frame([], usage=_usage(*tokens))
        return frames + _DONE

    def _finish(self, reason: str) -> bytes:
        if not self._chat:
            return self._frame([{"index": 0, "text": "", "finish_reason": _finish(reason)}])
        delta: dict[str, Any] = {} if self._role_sent else {"role": "assistant"}
        return self._frame([{"index": 0, "delta": delta, "finish_reason": _finish(reason)}])

    def failed(self, error: APIError) -> bytes:
        return b"data: " + orjson.dumps(error.body()) + b"\n\n" + _DONE


_DONE = b"data: [DONE]\n\n"
