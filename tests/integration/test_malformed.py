"""A malformed-input corpus against a live cascade: a few thousand generated requests, and
raw frames over sockets. No response is a 5xx; every error is OpenAI's JSON shape."""

from __future__ import annotations

import asyncio
import io
import json
import os

import aiohttp
import pytest

from tests.support.cascade import Cascade
from tests.support.corpus import RAW_FRAMES, bodies, raw_frames

FRAMES = int(os.environ.get("CASCADE_FUZZ_FRAMES", "1000"))
REQUESTS = int(os.environ.get("CASCADE_FUZZ_REQUESTS", "2500"))  # bench/fuzz.py: more


def shaped(status: int, body: bytes) -> bool:
    if status < 400:
        return True
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return set(error) == {"message", "type", "param", "code"}


async def _send_all(url: str) -> list[tuple[int, bytes, str]]:
    results: list[tuple[int, bytes, str]] = []
    connector = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:

        async def send(case: object) -> None:
            path, data, headers = case.path, case.body, case.headers  # type: ignore[attr-defined]
            try:
                async with session.post(
                    url + path,
                    data=io.BytesIO(data),
                    headers={"Content-Type": "application/json", **headers},
                ) as response:
                    results.append((response.status, await response.read(), repr(data[:120])))
            except aiohttp.ClientError as exc:  # no response at all: reported, and a failure
                results.append((0, repr(exc).encode(), repr((headers, data[:120]))))

        await asyncio.gather(*(send(case) for case in bodies(seed=7, count=REQUESTS)))
    return results


def test_a_generated_corpus_gets_no_5xx_and_only_openai_errors(served: Cascade) -> None:
    results = asyncio.run(_send_all(served.url))
    assert len(results) == REQUESTS
    unanswered = [(b[:200], d) for s, b, d in results if s == 0]
    assert unanswered == []
    server_errors = [(s, b[:200], d) for s, b, d in results if s >= 500]
    assert server_errors == []
    misshaped = [(s, b[:200], d) for s, b, d in results if not shaped(s, b)]
    assert misshaped == []
    statuses = {s for s, _, _ in results}
    assert 200 in statuses and 400 in statuses  # the corpus reaches both outcomes


async def _raw(port: int, frame: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


@pytest.mark.parametrize("frame", RAW_FRAMES, ids=range(len(RAW_FRAMES)))
def test_raw_frames_get_openai_errors(served: Cascade, frame: bytes) -> None:
    data = asyncio.run(_raw(served.server.port, frame))
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head else 0
    assert status == 0 or (status < 500 and shaped(status, body)), data[:300]


async def _raw_answer(port: int, frame: bytes) -> bytes:
    """What the server sends back within a second (b"" if it waits for more or hangs up)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(frame)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 1)
    except (TimeoutError, ConnectionError):
        return b""
    finally:
        writer.close()


async def _all_raw(port: int) -> list[tuple[bytes, bytes]]:
    gate = asyncio.Semaphore(32)

    async def one(frame: bytes) -> tuple[bytes, bytes]:
        async with gate:
            return frame, await _raw_answer(port, frame)

    return await asyncio.gather(*(one(f) for f in raw_frames(seed=11, count=FRAMES)))


def test_mutated_raw_requests_get_no_5xx_and_only_openai_errors(served: Cascade) -> None:
    answered = 0
    for frame, data in asyncio.run(_all_raw(served.server.port)):
        if not data:
            continue  # waiting for the rest of a cut request: the head timeout ends it
        answered += 1
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        assert status < 500, (frame[:200], data[:300])
        assert shaped(status, body.split(b"\r\n\r\n")[0]), (frame[:200], data[:300])
    assert answered >= FRAMES // 2
