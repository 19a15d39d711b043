"""A chat completions answer as a Response object, whole or as the Responses event stream.

Both take the chat answer as chat completions define it (an upstream's body or chunks as
sent, or the local tier's, built by router/api/render.py), so tool calls, refusals, logprobs
and usage details (cached and reasoning tokens) come through from any tier.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from router.api.render import as_chunks
from router.api.responses.request import ResponsesBody
from router.errors import APIError

_INCOMPLETE = {
    "length": "max_output_tokens",
    "cancelled": "max_output_tokens",
    "content_filter": "content_filter",
}


def usage(chat_usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """Chat usage in the Responses API's words (details kept where the upstream sent them)."""
    found = chat_usage or {}
    prompt, completion = (
        int(found.get("prompt_tokens") or 0),
        int(found.get("completion_tokens") or 0),
    )
    cached = (found.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (found.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def _text_part(text: str, logprobs: list[Any] | None = None) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}


def _message(item_id: str, parts: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": parts,
    }


def _call(call: Mapping[str, Any], status: str) -> dict[str, Any]:
    function = call.get("function") or {}
    return {
        "type": "function_call",
        "id": f"fc_{call.get('id', '')}",
        "call_id": call.get("id", ""),
        "name": function.get("name", ""),
        "arguments": function.get("arguments", ""),
        "status": status,
    }


class Shell:
    """What every Response object of one request shares: its id, model and request echo."""

    def __init__(self, request_id: str, body: ResponsesBody, model: str) -> None:
        self.id = f"resp_{request_id}"
        self.message_id = f"msg_{request_id}"
        self.created_at = int(time.time())
        self.model = model
        self._echo = {
            "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens,
            "metadata": body.metadata or {},
            "parallel_tool_calls": body.parallel_tool_calls is not False,
            "temperature": body.temperature,
            "top_p": body.top_p,
            "tool_choice": "auto" if body.tool_choice is None else _dump(body.tool_choice),
            "tools": [_dump(tool) for tool in body.tools or ()],
            "text": {"format": {"type": "text"}} if body.text is None else _dump(body.text),
            "user": body.user,
        }

    def response(
        self,
        output: list[dict[str, Any]],
        *,
        status: str,
        finish_reason: str | None,
        chat_usage: Mapping[str, Any] | None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        incomplete = _INCOMPLETE.get(finish_reason or "")
        if status == "completed" and incomplete is not None:
            status = "incomplete"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": error,
            "incomplete_details": None if status != "incomplete" else {"reason": incomplete},
            "model": self.model,
            "output": output,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": False,  # nothing is kept: previous_response_id is refused (request.py)
            "truncation": "disabled",
            "usage": None if chat_usage is None else usage(chat_usage),
            **self._echo,
        }


def _dump(value: Any) -> Any:
    return (
        value.model_dump(by_alias=True, exclude_none=True)
        if hasattr(value, "model_dump")
        else value
    )


def response_body(shell: Shell, chat: Mapping[str, Any]) -> dict[str, Any]:
    """A whole chat completion as a Response object."""
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    parts: list[dict[str, Any]] = []
    if message.get("content"):
        logprobs = (choice.get("logprobs") or {}).get("content")
        parts.append(_text_part(message["content"], logprobs))
    if message.get("refusal"):
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    output = [_message(shell.message_id, parts, "completed")] if parts else []
    output += [_call(call, "completed") for call in message.get("tool_calls") or ()]
    return shell.response(
        output,
        status="completed",
        finish_reason=choice.get("finish_reason"),
        chat_usage=chat.get("usage") or {},
    )


@dataclass(slots=True)
class _OpenCall:
    output_index: int
    call: dict[str, Any]


@dataclass(slots=True)
class ResponseEvents:
    """The Responses event stream of one answer, fed chat chunks or text pieces."""

    shell: Shell
    sequence: int = 0
    output: list[dict[str, Any]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    message_index: int | None = None
    calls: dict[int, _OpenCall] = field(default_factory=dict)
    chat_usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    begun: bool = False  # response.created went out
    native: bool = False  # an upstream's own Responses events are passed on

    def _event(self, kind: str, **values: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **values}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _response(self, status: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.shell.response(
            self.output,
            status=status,
            finish_reason=self.finish_reason,
            chat_usage=self.chat_usage,
            error=error,
        )

    def _begin(self) -> bytes:
        """response.created and response.in_progress, once, before anything of ours."""
        if self.begun or self.native:
            return b""
        self.begun = True
        snapshot = self._response("in_progress")
        return self._event("response.created", response=snapshot) + self._event(
            "response.in_progress", response=snapshot
        )

    def piece(self, delta: str, logprobs: list[dict[str, Any]] | None = None) -> bytes:
        """Answer text as it is generated (and its tokens' logprobs, when asked for)."""
        frames = self._begin()
        if self.message_index is None:
            self.message_index = len(self.output)
            item = _message(self.shell.message_id, [], "in_progress")
            self.output.append(item)
            frames += self._event(
                "response.output_item.added", output_index=self.message_index, item=item
            )
            frames += self._event(
                "response.content_part.added",
                item_id=self.shell.message_id,
                output_index=self.message_index,
                content_index=0,
                part=_text_part(""),
            )
        self.text.append(delta)
        self.logprobs += logprobs or ()
        return frames + self._event(
            "response.output_text.delta",
            item_id=self.shell.message_id,
            output_index=self.message_index,
            content_index=0,
            delta=delta,
            logprobs=logprobs or [],
        )

    def chunk(self, chunk: Mapping[str, Any]) -> bytes:
        """One chat completions chunk as sent by an upstream; or one event of an upstream
        that speaks the Responses API, passed on as it sent it."""
        kind = chunk.get("type")
        if "choices" not in chunk and isinstance(kind, str):
            self.native = True
            return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(chunk) + b"\n\n"
        frames = b""
        if chunk.get("usage"):
            self.chat_usage = dict(chunk["usage"])
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                frames += self.piece(
                    delta["content"], (choice.get("logprobs") or {}).get("content")
                )
            for call in delta.get("tool_calls") or ():
                frames += self._call_delta(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return frames

    def _call_delta(self, delta: Mapping[str, Any]) -> bytes:
        index = int(delta.get("index") or 0)
        function = delta.get("function") or {}
        frames = self._begin()
        open_call = self.calls.get(index)
        if open_call is None:
            call = {
                "id": delta.get("id", ""),
                "function": {"name": function.get("name", ""), "arguments": ""},
            }
            open_call = self.calls[index] = _OpenCall(len(self.output), _call(call, "in_progress"))
            self.output.append(open_call.call)
            frames += self._event(
                "response.output_item.added",
                output_index=open_call.output_index,
                item=dict(open_call.call),
            )
        if arguments := function.get("arguments"):
            open_call.call["arguments"] += arguments
            frames += self._event(
                "response.function_call_arguments.delta",
                item_id=open_call.call["id"],
                output_index=open_call.output_index,
                delta=arguments,
            )
        return frames

    def end(self, finish_reason: str | None, tokens: tuple[int, int]) -> bytes:
        """Close every item, then the Response as completed (or incomplete)."""
        if self.native:
            return b""  # the upstream's own response.completed went out
        self.finish_reason = self.finish_reason or finish_reason
        if self.chat_usage is None:
            self.chat_usage = {"prompt_tokens": tokens[0], "completion_tokens": tokens[1]}
        frames = self._begin()
        if self.message_index is not None:
            text = "".join(self.text)
            part = _text_part(text, self.logprobs)
            item = _message(self.shell.message_id, [part], "completed")
            self.output[self.message_index] = item
            where = {"item_id": self.shell.message_id, "output_index": self.message_index}
            frames += self._event(
                "response.output_text.done",
                **where,
                content_index=0,
                text=text,
                logprobs=self.logprobs,
            )
            frames += self._event("response.content_part.done", **where, content_index=0, part=part)
            frames += self._event(
                "response.output_item.done", output_index=self.message_index, item=item
            )
        for open_call in self.calls.values():
            open_call.call["status"] = "completed"
            frames += self._event(
                "response.function_call_arguments.done",
                item_id=open_call.call["id"],
                output_index=open_call.output_index,
                arguments=open_call.call["arguments"],
            )
            frames += self._event(
                "response.output_item.done",
                output_index=open_call.output_index,
                item=open_call.call,
            )
        final = self._response("completed")
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return frames + self._event(kind, response=final)

    def failed(self, error: APIError) -> bytes:
        """The answer broke after it began: an `error` event, then the Response as failed."""
        failure = {"code": error.code or "server_error", "message": error.message}
        return (
            self._begin()
            + self._event("error", code=failure["code"], message=failure["message"], param=None)
            + self._event("response.failed", response=self._response("failed", failure))
        )

    def whole(self, body: Mapping[str, Any]) -> bytes:
        """A whole answer, as the events a stream of it would have sent: a chat completion
        (an upstream's), or a Response (from a tier that speaks the Responses API)."""
        if body.get("object") != "response":
            return b"".join(self.chunk(chunk) for chunk in as_chunks(body, chat=True))
        self.native = True
        created = {**body, "status": "in_progress", "output": [], "usage": None}
        frames = self._event("response.created", response=created)
        frames += self._event("response.in_progress", response=created)
        for index, item in enumerate(body.get("output") or ()):
            frames += self._event("response.output_item.added", output_index=index, item=item)
            frames += self._item_events(index, item)
            frames += self._event("response.output_item.done", output_index=index, item=item)
        kind = "response.incomplete" if body.get("status") == "incomplete" else "response.completed"
        return frames + self._event(kind, response=dict(body))

    def _item_events(self, index: int, item: Mapping[str, Any]) -> bytes:
        """The deltas of one whole output item: its text parts, or a call's arguments."""
        frames = b""
        where = {"item_id": item.get("id"), "output_index": index}
        if item.get("type") == "function_call":
            arguments = item.get("arguments", "")
            frames += self._event(
                "response.function_call_arguments.delta", **where, delta=arguments
            )
            return frames + self._event(
                "response.function_call_arguments.done", **where, arguments=arguments
            )
        for number, part in enumerate(item.get("content") or ()):
            at = {**where, "content_index": number}
            frames += self._event("response.content_part.added", **at, part=part)
            if part.get("type") == "output_text":
                text = part.get("text", "")
                frames += self._event("response.output_text.delta", **at, delta=text, logprobs=[])
                frames += self._event("response.output_text.done", **at, text=text, logprobs=[])
            frames += self._event("response.content_part.done", **at, part=part)
        return frames
