"""An OpenAI-compatible upstream that answers each known question with its gold answer: the
reference tier of the shadow-check tests (an oracle, as the issue describes), not a model.

    python -m tests.support.gold_upstream --port 9000 --answers answers.jsonl

`answers.jsonl`: one {"prompt": ..., "answer": ...} per line; a request is answered with the
answer of its last user message (else "I do not know."), whole or streamed. Its usage counts
the prompt as a provider would (about 4 bytes a token) and the answer's words.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

ANSWERS = web.AppKey("answers", dict)
UNKNOWN = "I do not know."


def _question(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""


def _prompt_tokens(body: dict[str, Any]) -> int:
    """What a provider would bill the prompt at: about 4 bytes a token, and 4 tokens of
    framing a message (as OpenAI's tokenizers come out on English text)."""
    messages = body.get("messages") or []
    size = sum(len(str(m.get("content") or "").encode()) for m in messages)
    return (size + 3) // 4 + 4 * len(messages)


async def _chat(request: web.Request) -> web.StreamResponse:
    body = orjson.loads(await request.read())
    answer = request.app[ANSWERS].get(_question(body), UNKNOWN)
    created, model = int(time.time()), str(body.get("model") or "gold")
    usage = {"prompt_tokens": _prompt_tokens(body), "completion_tokens": len(answer.split()) or 1}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    head = {"id": "chatcmpl-gold", "created": created, "model": model}
    if not body.get("stream"):
        choice = {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": answer},
        }
        whole = {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
        return web.json_response(whole)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    chunk = {**head, "object": "chat.completion.chunk"}
    for choices, extra in (
        ([{"index": 0, "delta": {"role": "assistant", "content": answer}}], {}),
        ([{"index": 0, "delta": {}, "finish_reason": "stop"}], {}),
        ([], {"usage": usage}),
    ):
        await response.write(b"data: " + orjson.dumps({**chunk, "choices": choices, **extra}))
        await response.write(b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    return response


async def _models(_: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "gold", "object": "model"}]})


def create_app(answers: dict[str, str]) -> web.Application:
    app = web.Application()
    app[ANSWERS] = answers
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_get("/v1/models", _models)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--answers", type=Path, required=True)
    args = parser.parse_args()
    answers = {}
    for line in args.answers.read_text().splitlines():
        row = json.loads(line)
        answers[row["prompt"]] = row["answer"]
    web.run_app(create_app(answers), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
