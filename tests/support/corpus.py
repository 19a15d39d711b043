"""Malformed requests, generated from a seed: bodies (JSON that is wrong in every way a field
can be), headers, and raw HTTP frames. For tests (a few thousand) and bench/fuzz.py (more)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

VALID: dict[str, Any] = {
    "model": "guarded",
    "messages": [{"role": "user", "content": "Hi"}],
    "max_tokens": 8,
}
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    -(2**63) - 1,
    2**64,
    10**400 if False else 1e308,
    -1e308,
    2.5e-324,
    float("nan"),
    float("inf"),
    "",
    " ",
    "\x00",
    "\u202e",
    "\ud7ff",
    "a" * 70_000,
    "😀" * 1000,
    [],
    [None],
    [[[]]],
    {},
    {"a": {"b": {"c": []}}},
    [{"type": "text"}],
    [{"type": "image_url", "image_url": {"url": "http://x"}}],
    [{"type": "text", "text": 5}],
    "sk-" + "x" * 40,
    "../../etc/passwd",
    "<script>",
]
FIELDS = [
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "user",
    "stream",
    "stream_options",
    "n",
    "prompt",
    "logit_bias",
    "tools",
]
MESSAGE_FIELDS = ["role", "content", "name", "tool_calls", "extra"]
HOSTILE_HEADERS = [
    {"Authorization": "Bearer " + "a" * 5000},
    {"Authorization": "Basic !!!"},
    {"x-request-id": "a" * 500},
    {"x-client-request-id": "id with spaces and ü"},
    {"x-cascade-tags": ",".join(["t"] * 100)},
    {"x-cascade-tags": "bad tag!"},
    {"Content-Type": "text/plain"},
    {"Content-Type": "application/json; charset=latin-1"},
    # Content-Encoding lies are in RAW_FRAMES: the server answers 400 and closes while an
    # HTTP client may still be sending the body, so only a raw socket reliably reads it.
]


@dataclass
class Case:
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _mutated(rng: random.Random) -> Any:
    body: dict[str, Any] = json.loads(json.dumps(VALID))
    for _ in range(rng.randint(1, 3)):
        kind = rng.random()
        if kind < 0.45:
            body[rng.choice(FIELDS)] = rng.choice(ODD_VALUES)
        elif kind < 0.7 and isinstance(body.get("messages"), list) and body["messages"]:
            message = dict(body["messages"][0]) if isinstance(body["messages"][0], dict) else {}
            message[rng.choice(MESSAGE_FIELDS)] = rng.choice(ODD_VALUES)
            body["messages"] = [message] * rng.choice([1, 2, 50])
        elif kind < 0.8:
            body.pop(rng.choice(FIELDS), None)
        elif kind < 0.9:
            body = rng.choice([[], "text", 5, None, [body]])  # not an object at all
            break
        else:
            depth = rng.choice([10, 100, 600])
            nested: Any = "x"
            for _ in range(depth):
                nested = [nested]
            body["messages"] = nested
    return body


def bodies(seed: int, count: int) -> Iterator[Case]:
    rng = random.Random(seed)
    for number in range(count):
        path = rng.choice(["/v1/chat/completions", "/v1/completions"])
        roll = rng.random()
        if roll < 0.75:
            data = _json(_mutated(rng))
        elif roll < 0.85:  # broken JSON
            text = _json(VALID)
            cut = rng.randint(0, len(text))
            data = text[:cut] + bytes([rng.randint(0, 255)]) * rng.randint(0, 3)
        elif roll < 0.9:  # not UTF-8
            data = b'{"model": "\xff\xfe", "messages": []}'
        else:
            data = _json(VALID)
        headers = dict(rng.choice(HOSTILE_HEADERS)) if number % 4 == 0 else {}
        yield Case(path, data, headers)


RAW_FRAMES = [
    b"GARBAGE\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
    b"Content-Length: 2\r\n\r\n{}",
    b"POST /v1/chat/completions HTTP/9.9\r\nHost: x\r\n\r\n",
    b"POST /%00%ff/../v1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/models?x=" + b"%" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-request-id: a\rb\r\n\r\n",
    # an encoding this server does not decode is refused with the headers (so over a raw
    # socket: an HTTP client may still be sending the body when the answer comes)
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Encoding: br\r\n"
    b"Content-Length: 2\r\n\r\n{}",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Encoding: deflate\r\n"
    b"Content-Length: 9\r\n\r\nnot-zlib!",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 20\r\nContent-Encoding: gzip\r\n\r\n" + b"\x1f\x8b" + b"\x00" * 18,
]


_REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: cascade\r\nContent-Type: application/json\r\n"
    b"Authorization: Bearer sk-corpus-key\r\nContent-Length: %d\r\n\r\n"
)


def raw_frames(seed: int, count: int) -> Iterator[bytes]:
    """Whole HTTP requests with their bytes mutated: flipped, dropped, duplicated, cut, or
    junk inserted, in the head or the body."""
    rng = random.Random(seed)
    body = _json(VALID)
    for _ in range(count):
        frame = bytearray(_REQUEST % len(body) + body)
        for _ in range(rng.randint(1, 4)):
            if len(frame) < 2:
                break
            at = rng.randrange(len(frame))
            kind = rng.random()
            if kind < 0.3:
                frame[at] = rng.randrange(256)
            elif kind < 0.5:
                del frame[at : at + rng.randint(1, 8)]
            elif kind < 0.65:
                frame[at:at] = frame[at : at + rng.randint(1, 40)]
            elif kind < 0.8:
                frame[at:at] = rng.choice([b"\r\n", b"\n", b"\x00", b":", b" ", b"\r\n\r\n"])
            else:
                frame = frame[: rng.randrange(1, len(frame))]
        yield bytes(frame)
