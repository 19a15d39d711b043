"""An OpenAI-compatible upstream that bills as a provider does, to hold the ledger to account.

    python -m tests.support.billing_upstream --port 9000 [--name primary]
        [--input-per-1m 1.0] [--output-per-1m 2.0] [--token-ms 1]

It counts prompt tokens with its own tokenizer (word pieces and punctuation, not the
gateway's 4-bytes rule) over the whole request: every message's text, its tool calls, the
tool and function definitions, a response schema, and images by OpenAI's tile formula. It
generates its answers a token at a time (`--token-ms` apart; one token per stream chunk, `n`
choices each) and stops when it sees the connection closed, billing what it generated until
then, as providers do. `GET /bill` returns every answer it billed: its id (the `id` of the
answer, which the gateway records as `upstream_id`), the caller's `user`, tokens and cost.

Faults, asked for per request in `metadata` (passed on by the gateway as sent), and only on
the instance named `metadata.fault_on` (default: every instance): `fault: cut` (reset the
connection after `after` tokens), `stall` (stop sending after `after` tokens until the client
leaves), `no_done` (a whole stream without `[DONE]`), `error500` / `error503` / `error429` (refused
before generating: not billed).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import math
import re
import struct
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from aiohttp import web

_PIECE = re.compile(r"\w+|[^\w\s]")
_WORDS = ("the", "answer", "is", "that", "a", "cascade", "routes", "each", "request", "well")


@dataclass
class Bill:
    id: str
    user: str
    prompt_tokens: int
    completion_tokens: int
    usd: float
    stream: bool
    fault: str | None


@dataclass
class Prices:
    input_per_1m: float
    output_per_1m: float

    def cost(self, prompt: int, completion: int) -> float:
        return (prompt * self.input_per_1m + completion * self.output_per_1m) / 1e6


BILLS = web.AppKey("bills", list[Bill])
PRICES = web.AppKey("prices", Prices)
NAME = web.AppKey("name", str)
TOKEN_S = web.AppKey("token_s", float)


def _text_tokens(text: str) -> int:
    return len(_PIECE.findall(text))


def _image_tokens(url: str, detail: str | None) -> int:
    """OpenAI's documented formula; the size from a PNG data URL, else its maximum."""
    if detail == "low":
        return 85
    width = height = None
    if url.startswith("data:image/png;base64,"):
        head = base64.b64decode(url.split(",", 1)[1][:64])
        width, height = struct.unpack(">II", head[16:24])
    if width is None or height is None:
        return 85 + 170 * 8
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        w, h = w * 2048 / max(w, h), h * 2048 / max(w, h)
    if min(w, h) > 768:
        w, h = w * 768 / min(w, h), h * 768 / min(w, h)
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


def prompt_tokens(body: dict[str, Any]) -> int:
    """What this provider bills as input for a chat completions (or embeddings) body."""
    tokens = 3
    for message in body.get("messages") or ():
        tokens += 4
        content = message.get("content")
        if isinstance(content, str):
            tokens += _text_tokens(content)
        for part in content if isinstance(content, list) else ():
            if part.get("type") == "text":
                tokens += _text_tokens(part["text"])
            elif part.get("type") == "image_url":
                image = part["image_url"]
                tokens += _image_tokens(image["url"], image.get("detail"))
        for key in ("tool_calls", "function_call"):
            if message.get(key):
                tokens += _text_tokens(orjson.dumps(message[key]).decode())
    for key in ("tools", "functions"):
        if body.get(key):
            tokens += _text_tokens(orjson.dumps(body[key]).decode())
    schema = (body.get("response_format") or {}).get("json_schema")
    if schema:
        tokens += _text_tokens(orjson.dumps(schema).decode())
    if "prompt" in body:
        tokens += _text_tokens(str(body["prompt"]))
    inputs = body.get("input")
    for text in [inputs] if isinstance(inputs, str) else inputs or ():
        tokens += _text_tokens(str(text))
    return tokens


def _answer_length(body: dict[str, Any], index: int) -> int:
    digest = hashlib.sha256(orjson.dumps(body.get("messages")) + bytes([index])).digest()
    most = body.get("max_completion_tokens") or body.get("max_tokens") or 16
    return min(int(most), 8 + digest[0] % 40)


class _Generation:
    """One request's answer, generated a token at a time and billed as it goes."""

    def __init__(self, request: web.Request, body: dict[str, Any]) -> None:
        self.request = request
        self.body = body
        self.metadata = body.get("metadata") or {}
        name = self.metadata.get("fault_on")
        self.fault = self.metadata.get("fault") if name in (None, request.app[NAME]) else None
        self.after = int(self.metadata.get("after", 5))
        self.id = f"chatcmpl-{request.app[NAME]}-{len(request.app[BILLS])}-{time.monotonic_ns()}"
        self.prompt = prompt_tokens(body)
        self.generated = 0
        self.created = int(time.time())
        self.billed = False

    def gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    async def token(self) -> bool:
        """Generate one token; False when the client is gone (nothing more is generated)."""
        if self.gone():
            return False
        await asyncio.sleep(self.request.app[TOKEN_S])
        self.generated += 1
        return True

    def bill(self) -> None:
        """Once, whenever the answer ended (done, cut, or its client gone)."""
        if self.billed:
            return
        self.billed = True
        prices = self.request.app[PRICES]
        usd = prices.cost(self.prompt, self.generated)
        user = str(self.body.get("user") or "-")
        stream = bool(self.body.get("stream"))
        entry = Bill(self.id, user, self.prompt, self.generated, usd, stream, self.fault)
        self.request.app[BILLS].append(entry)

    def usage(self) -> dict[str, int]:
        total = self.prompt + self.generated
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.generated,
            "total_tokens": total,
        }

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.body.get("model"),
            "choices": choices,
            **extra,
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"


async def _whole(generation: _Generation) -> web.StreamResponse:
    choices, choice_count = [], int(generation.body.get("n") or 1)
    for index in range(choice_count):
        words = []
        for position in range(_answer_length(generation.body, index)):
            if not await generation.token():
                return web.Response(status=499)  # nobody reads it
            words.append(_WORDS[position % len(_WORDS)])
        message = {"role": "assistant", "content": " ".join(words)}
        choices.append({"index": index, "finish_reason": "stop", "message": message})
    generation.bill()
    answer = {
        "id": generation.id,
        "object": "chat.completion",
        "created": generation.created,
        "model": generation.body.get("model"),
        "choices": choices,
        "usage": generation.usage(),
    }
    return web.json_response(answer, dumps=lambda o: orjson.dumps(o).decode())


async def _streamed(generation: _Generation) -> web.StreamResponse:
    request, body = generation.request, generation.body
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    try:
        for index in range(int(body.get("n") or 1)):
            for position in range(_answer_length(body, index)):
                if (
                    generation.fault in ("cut", "stall")
                    and generation.generated >= generation.after
                ):
                    if generation.fault == "cut":
                        assert request.transport is not None
                        request.transport.close()
                        return response
                    while not generation.gone():  # stalled: until the client gives up
                        await asyncio.sleep(0.25)
                    return response
                if not await generation.token():
                    return response
                word = _WORDS[position % len(_WORDS)]
                delta = {"content": word if position == 0 else f" {word}"}
                await response.write(
                    generation.chunk([{"index": index, "delta": delta, "finish_reason": None}])
                )
            finish = [{"index": index, "delta": {}, "finish_reason": "stop"}]
            await response.write(generation.chunk(finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(generation.chunk([], usage=generation.usage()))
        if generation.fault != "no_done":
            await response.write(b"data: [DONE]\n\n")
    except ConnectionResetError:
        pass
    return response


async def chat(request: web.Request) -> web.StreamResponse:
    body = orjson.loads(await request.read())
    generation = _Generation(request, body)
    if generation.fault in ("error500", "error503", "error429"):
        status = int(generation.fault.removeprefix("error"))
        error = {"error": {"message": "refused", "type": "server_error", "code": None}}
        return web.json_response(error, status=status)
    try:  # billed however it ends, its handler cancelled by a client gone included
        return await (_streamed if body.get("stream") else _whole)(generation)
    finally:
        generation.bill()


async def embeddings(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    generation = _Generation(request, body)
    generation.bill()
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = [
        {"object": "embedding", "index": i, "embedding": [0.0, 0.1]} for i in range(len(inputs))
    ]
    usage = {"prompt_tokens": generation.prompt, "total_tokens": generation.prompt}
    answer = {"object": "list", "data": data, "model": body.get("model"), "usage": usage}
    answer["id"] = generation.id
    return web.json_response(answer)


async def bill(request: web.Request) -> web.Response:
    return web.json_response([asdict(entry) for entry in request.app[BILLS]])


async def models(_: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "billed", "object": "model"}]})


def create_app(name: str, prices: Prices, token_s: float) -> web.Application:
    app = web.Application()
    app[BILLS] = []
    app[PRICES] = prices
    app[NAME] = name
    app[TOKEN_S] = token_s
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/bill", bill)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="billing")
    parser.add_argument("--input-per-1m", type=float, default=1.0)
    parser.add_argument("--output-per-1m", type=float, default=2.0)
    parser.add_argument("--token-ms", type=float, default=1.0)
    args = parser.parse_args(argv)
    prices = Prices(args.input_per_1m, args.output_per_1m)
    app = create_app(args.name, prices, args.token_ms / 1000)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, handler_cancellation=True)


if __name__ == "__main__":
    main()
