"""A tiny OpenAI-compatible upstream for benchmarks and fault injection (not a model).

    python -m tests.support.fake_upstream --port 9000 [--delay-ms 5] [--status 500]
        [--drop-after 2] [--end-after 2] [--html] [--retry-after 7]

It answers every chat/completions request with the same short text, streamed or not, so
proxy overhead can be measured against it and failures injected on purpose. Faults can also
be switched while it runs: `POST /_fault` with any of the flags' names as JSON keys
(`{"status": 500}`, `{}` for healthy); `GET /_fault` returns the faults and how many
completion requests arrived, how many were closed by their client before the answer, and
how many are in progress.

Faults: `status` (an error body that echoes the credentials it was sent, as careless
upstreams do; `retry_after` adds that header), `delay_ms` (before the response headers),
`first_byte_ms` (after the headers of a stream, before its first event), `drop_after` (reset
the connection after N stream events), `end_after` (end the stream cleanly after N events,
without `[DONE]`), `no_done` (the whole stream, finish and usage included, but no `[DONE]`),
`no_usage` (no usage object), `status_times` (the `status` fault for that many requests,
then healthy), `malformed_at` (one malformed event before the Nth), `stall_after` (a stream
that goes silent after N events), `content_filter` (a 400 with code `content_filter`, as a
provider's content policy answers), `html` (a 200 text/html page instead of JSON or events),
`reset_early` (the connection closed before any response), `context_length` (a 400 with code
`context_length_exceeded`), `refuse_prefill` (a 400 for a request whose last message is the
assistant's).

A request whose last message is the assistant's (a prefill) is continued: the answer's rest
after that text, when the answer begins with it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

ANSWER = "Hello from the fake upstream."
_PIECES = ("Hello", " from", " the", " fake", " upstream", ".")
CACHED_TOKENS, REASONING_TOKENS = 4, 2  # what its usage details report


@dataclass
class Faults:
    status: int = 200
    delay_ms: float = 0.0
    first_byte_ms: float = 0.0
    drop_after: int | None = None
    end_after: int | None = None
    html: bool = False
    retry_after: int | None = None
    no_done: bool = False  # a whole stream, its finish and usage sent, but no [DONE]
    no_usage: bool = False  # answers (whole or streamed) without a usage object
    status_times: int | None = None  # `status` for this many requests only, then healthy
    malformed_at: int | None = None  # one malformed event before the stream's Nth
    stall_after: int | None = None  # a stream that sends N events, then nothing
    content_filter: bool = False  # a 400 with code content_filter (a provider's refusal)
    reset_early: bool = False  # the connection closed before the response's headers
    context_length: bool = False  # a 400 with code context_length_exceeded
    refuse_prefill: bool = False  # a 400 for a last message of the assistant's

    def reset(self, **values: Any) -> None:
        """Every fault as given, the rest healthy."""
        for name, value in asdict(Faults(**values)).items():
            setattr(self, name, value)


@dataclass
class Counters:
    requests: int = 0
    closed_early: int = 0  # the client went away before the answer was complete
    in_progress: int = 0
    most_in_progress: int = 0  # the most answers it was giving at once
    bodies: list[dict[str, Any]] = field(default_factory=list)  # the last few request bodies
    traceparents: list[str] = field(default_factory=list)  # the last few (W3C trace context)


FAULTS = web.AppKey("faults", Faults)
COUNTERS = web.AppKey("counters", Counters)


def _chunk(created: int, model: str, **fields: Any) -> bytes:
    body = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created}
    return b"data: " + orjson.dumps({**body, "model": model, **fields}) + b"\n\n"


def _whole(created: int, model: str, usage: dict[str, int], choice: dict[str, Any]) -> web.Response:
    answer = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "usage": usage,
        "system_fingerprint": "fp_fake",
        "choices": [choice],
    }
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


def _error(status: int, echoed: str, retry_after: int | None) -> web.Response:
    key = echoed.removeprefix("Bearer ")
    forms = f"key={key} url={quote(key, safe='')} b64={base64.b64encode(key.encode()).decode()}"
    error = {
        "error": {
            "message": f"injected failure {status} for {echoed} ({forms})",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return web.Response(
        status=status, body=orjson.dumps(error), content_type="application/json", headers=headers
    )


async def _answer(request: web.Request, faults: Faults) -> web.StreamResponse:  # noqa: PLR0911, PLR0912 - one branch per fault
    body = orjson.loads(await request.read())
    counters = request.app[COUNTERS]
    counters.bodies = [*counters.bodies[-9:], body]
    if "traceparent" in request.headers:
        counters.traceparents = [*counters.traceparents[-9:], request.headers["traceparent"]]
    if faults.delay_ms:
        await asyncio.sleep(faults.delay_ms / 1000)
    if faults.reset_early:
        assert request.transport is not None
        request.transport.close()  # before any byte of a response
        return web.Response()
    prefill = _prefill(body)
    refused = _refusal(faults, prefill is not None)
    if refused is not None:
        return web.json_response({"error": refused}, status=400)
    if faults.status != 200 and faults.status_times != 0:
        if faults.status_times is not None:
            faults.status_times -= 1
        # Like a careless upstream, echo the credentials it was sent.
        return _error(faults.status, request.headers.get("Authorization", ""), faults.retry_after)
    if faults.html:
        return web.Response(
            text="<html><body>Gateway maintenance</body></html>", content_type="text/html"
        )
    if body.get("tools") or body.get("functions"):
        return await _tool_call(request, body)
    created, model = int(time.time()), body.get("model", "fake")
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": len(_PIECES),
        "total_tokens": 10 + len(_PIECES),
        # as OpenAI reports them: parts of the counts above, billed differently
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
        "completion_tokens_details": {"reasoning_tokens": REASONING_TOKENS},
    }
    content = _content_for(body)
    if prefill is not None and content.startswith(prefill):
        content = content[len(prefill) :]  # the rest of the answer it was asked to continue
    if not body.get("stream"):
        choice: dict[str, Any] = {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": content},
        }
        if body.get("logprobs"):
            choice["logprobs"] = {
                "content": [
                    {"token": p, "logprob": -0.1, "bytes": list(p.encode()), "top_logprobs": []}
                    for p in _PIECES
                ]
            }
        return _whole(created, model, {} if faults.no_usage else usage, choice)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    if faults.first_byte_ms:
        await asyncio.sleep(faults.first_byte_ms / 1000)
    pieces = _PIECES if content == ANSWER else _pieces_of(content)
    for index, piece in enumerate(pieces):
        if faults.drop_after is not None and index >= faults.drop_after:
            # Break the connection mid-stream, as a crashing upstream would.
            assert request.transport is not None
            request.transport.close()
            return response
        if faults.end_after is not None and index >= faults.end_after:
            await response.write_eof()  # a clean end, but no [DONE]: cut off
            return response
        if faults.stall_after is not None and index >= faults.stall_after:
            await asyncio.sleep(3600)  # silent until the client gives up
        if faults.malformed_at is not None and index == faults.malformed_at:
            await response.write(b'data: {"choices": [{"delta": {"content": "bro\n\n')
        delta = {"content": piece}
        await response.write(
            _chunk(created, model, choices=[{"index": 0, "delta": delta, "finish_reason": None}])
        )
    ending = {} if faults.no_usage else {"usage": usage}
    final = _chunk(
        created, model, **ending, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]
    )
    await response.write(final if faults.no_done else final + b"data: [DONE]\n\n")
    return response


def _prefill(body: dict[str, Any]) -> str | None:
    """The assistant text a request asks to continue (its last message), else None."""
    messages = body.get("messages") or []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    content = last.get("content")
    return content if last.get("role") == "assistant" and isinstance(content, str) else None


def _refusal(faults: Faults, prefilled: bool) -> dict[str, Any] | None:
    """The 400 error a fault makes of this request, if any."""
    if faults.content_filter:
        message = (
            "The response was filtered due to the prompt triggering the content management policy."
        )
        return {
            "message": message,
            "type": "invalid_request_error",
            "param": "prompt",
            "code": "content_filter",
        }
    if faults.context_length:
        message = "This model's maximum context length is 16 tokens. Please reduce the length."
        return {
            "message": message,
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    if faults.refuse_prefill and prefilled:
        message = "This model does not support assistant message prefill."
        return {
            "message": message,
            "type": "invalid_request_error",
            "param": "messages",
            "code": None,
        }
    return None


def _pieces_of(content: str) -> tuple[str, ...]:
    """A text streamed a word at a time (the answer's own pieces when it is the answer)."""
    for start in range(len(_PIECES)):
        if "".join(_PIECES[start:]) == content:
            return _PIECES[start:]
    return (content,)


def _example(schema: dict[str, Any]) -> Any:
    """A value that satisfies a simple JSON schema (what a capable model would write)."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        return {name: _example(sub) for name, sub in schema.get("properties", {}).items()}
    examples = {"string": "fake", "integer": 42, "number": 4.2, "boolean": True, "array": []}
    return examples.get(str(kind))


def _content_for(body: dict[str, Any]) -> str:
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = response_format["json_schema"].get("schema") or {}
        return orjson.dumps(_example(schema)).decode()
    if response_format.get("type") == "json_object":
        return '{"answer": "fake"}'
    return ANSWER


async def _tool_call(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """A capable model's answer to a request with tools: a call of the first tool."""
    tools = body.get("tools") or [{"function": f} for f in body.get("functions", [])]
    name = tools[0]["function"]["name"]
    parameters = tools[0]["function"].get("parameters") or {}
    arguments = (
        '{"city": "Paris"}'
        if "city" in parameters.get("properties", {})
        else orjson.dumps(_example(parameters)).decode()
    )
    created, model = int(time.time()), body.get("model", "fake")
    call = {
        "id": "call_fake_1",
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }
    usage = {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}
    if not body.get("stream"):
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        choice = {"index": 0, "finish_reason": "tool_calls", "message": message}
        return _whole(created, model, usage, choice)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    opening = {
        "index": 0,
        "id": call["id"],
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": None, "tool_calls": [opening]}]
    half = len(arguments) // 2
    deltas += [
        {"tool_calls": [{"index": 0, "function": {"arguments": part}}]}
        for part in (arguments[:half], arguments[half:])
    ]
    for delta in deltas:
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        await response.write(_chunk(created, model, choices=[choice]))
    done = {"index": 0, "delta": {}, "finish_reason": "tool_calls"}
    await response.write(_chunk(created, model, choices=[done]))
    await response.write(_chunk(created, model, choices=[], usage=usage) + b"data: [DONE]\n\n")
    return response


def _response_object(body: dict[str, Any], status: str) -> dict[str, Any]:
    """What OpenAI's /v1/responses answers: one message, the usage in its words."""
    message = {
        "type": "message",
        "id": "msg_fake",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": ANSWER, "annotations": []}],
    }
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": body.get("model", "fake"),
        "error": None,
        "output": [message] if status == "completed" else [],
        "previous_response_id": body.get("previous_response_id"),
        "usage": {
            "input_tokens": 12,
            "input_tokens_details": {"cached_tokens": CACHED_TOKENS},
            "output_tokens": len(_PIECES),
            "output_tokens_details": {"reasoning_tokens": REASONING_TOKENS},
            "total_tokens": 12 + len(_PIECES),
        },
    }


async def _responses(request: web.Request) -> web.StreamResponse:
    """POST /v1/responses, as an upstream that speaks the Responses API answers it."""
    body = orjson.loads(await request.read())
    counters = request.app[COUNTERS]
    counters.bodies = [*counters.bodies[-9:], body]
    if not body.get("stream"):
        answer = _response_object(body, "completed")
        return web.Response(body=orjson.dumps(answer), content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response_object(body, "in_progress")},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {
                "type": "message",
                "id": "msg_fake",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            },
        },
    ]
    events += [
        {
            "type": "response.output_text.delta",
            "item_id": "msg_fake",
            "output_index": 0,
            "content_index": 0,
            "delta": piece,
        }
        for piece in _PIECES
    ]
    events.append({"type": "response.completed", "response": _response_object(body, "completed")})
    for number, event in enumerate(events):
        event["sequence_number"] = number
        data = orjson.dumps(event)
        await response.write(b"event: " + event["type"].encode() + b"\ndata: " + data + b"\n\n")
    return response


def create_app(faults: Faults | None = None) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        counters = request.app[COUNTERS]
        counters.requests += 1
        counters.in_progress += 1
        counters.most_in_progress = max(counters.most_in_progress, counters.in_progress)
        try:
            return await _answer(request, request.app[FAULTS])
        except asyncio.CancelledError:
            counters.closed_early += 1
            raise
        finally:
            counters.in_progress -= 1

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        counters = request.app[COUNTERS]
        counters.requests += 1
        counters.bodies = [*counters.bodies[-9:], body]
        faults = request.app[FAULTS]
        if faults.status != 200:
            return _error(faults.status, request.headers.get("Authorization", ""), None)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        size = int(body.get("dimensions") or 3)
        if not 1 <= size <= 4096:  # as a real upstream: its own limit, a 400
            return _error(400, "dimensions out of range", None)
        data = [
            {"object": "embedding", "index": i, "embedding": [0.25] * size}
            for i in range(len(inputs))
        ]
        tokens = sum(len(str(text).split()) for text in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        model = body.get("model", "fake")
        return web.json_response({"object": "list", "data": data, "model": model, "usage": usage})

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def get_fault(request: web.Request) -> web.Response:
        counters = request.app[COUNTERS]
        return web.json_response(
            {
                **asdict(request.app[FAULTS]),
                "requests": counters.requests,
                "closed_early": counters.closed_early,
                "in_progress": counters.in_progress,
                "most_in_progress": counters.most_in_progress,
                "bodies": counters.bodies,
                "traceparents": counters.traceparents,
            }
        )

    async def set_fault(request: web.Request) -> web.Response:
        request.app[FAULTS].reset(**await request.json())
        return await get_fault(request)

    app = web.Application()
    app[FAULTS] = faults or Faults()
    app[COUNTERS] = Counters()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/responses", _responses)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/_fault", get_fault)
    app.router.add_post("/_fault", set_fault)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.fake_upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--first-byte-ms", type=float, default=0.0)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--drop-after", type=int, default=None)
    parser.add_argument("--end-after", type=int, default=None)
    parser.add_argument("--html", action="store_true")
    parser.add_argument("--retry-after", type=int, default=None)
    args = parser.parse_args(argv)
    faults = Faults(
        args.status,
        args.delay_ms,
        args.first_byte_ms,
        args.drop_after,
        args.end_after,
        args.html,
        args.retry_after,
    )
    web.run_app(
        create_app(faults),
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
        handler_cancellation=True,
    )


if __name__ == "__main__":
    main()
