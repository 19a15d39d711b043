"""A tiny OpenAI-compatible upstream for benchmarks and fault injection (not a model).

    python -m tests.support.fake_upstream --port 9000 [--delay-ms 5] [--status 500] [--drop-after 2]

It answers every chat/completions request with the same short text, streamed or not, so
proxy overhead can be measured against it and failures injected on purpose.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

import orjson
from aiohttp import web

ANSWER = "Hello from the fake upstream."
_PIECES = ("Hello", " from", " the", " fake", " upstream", ".")


def create_app(
    delay_ms: float = 0.0, status: int = 200, drop_after: int | None = None
) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        if status != 200:
            # Like a careless upstream, echo the credentials it was sent.
            echoed = request.headers.get("Authorization", "")
            error = {
                "error": {
                    "message": f"injected failure {status} for {echoed}",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
            return web.Response(
                status=status, body=orjson.dumps(error), content_type="application/json"
            )
        created, model = int(time.time()), body.get("model", "fake")
        usage = {
            "prompt_tokens": 10,
            "completion_tokens": len(_PIECES),
            "total_tokens": 10 + len(_PIECES),
        }
        if not body.get("stream"):
            return web.Response(
                body=orjson.dumps(
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "usage": usage,
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": ANSWER},
                            }
                        ],
                    }
                ),
                content_type="application/json",
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index, piece in enumerate(_PIECES):
            if drop_after is not None and index >= drop_after:
                # Break the connection mid-stream, as a crashing upstream would.
                assert request.transport is not None
                request.transport.close()
                return response
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        final = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "usage": usage,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        await response.write(b"data: " + orjson.dumps(final) + b"\n\ndata: [DONE]\n\n")
        return response

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.fake_upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--drop-after", type=int, default=None)
    args = parser.parse_args(argv)
    web.run_app(
        create_app(args.delay_ms, args.status, args.drop_after),
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
