"""What a hostile tenant sends at once (tests/integration/test_hostile.py, bench/hostile.py):
a 4,000-value draft-04 enum schema, a backtracking `pattern`, a 1 MB body of 2,048 messages,
5,000 tools, JSON nested 100,000 deep, and 240 streams held open."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import aiohttp
import orjson


def hostile_bodies() -> list[bytes]:
    draft4 = "http://json-schema.org/draft-04/schema#"
    values = [{"k": i} for i in range(4000)]
    enum = {"$schema": draft4, "type": "object", "properties": {"x": {"enum": values}}}
    pattern = {"type": "object", "properties": {"a": {"type": "string", "pattern": "^(a+)+$"}}}
    ask = [{"role": "user", "content": "a" * 28 + "!"}]

    def schema(found: Mapping[str, object]) -> bytes:
        format_ = {"type": "json_schema", "json_schema": {"name": "s", "schema": found}}
        return orjson.dumps({"model": "remote", "messages": ask, "response_format": format_})

    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    many = [{"role": "user", "content": "x" * 480} for _ in range(2048)]
    deep = b'{"model": "remote", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    return [
        schema(enum),
        schema(pattern),
        orjson.dumps({"model": "remote", "messages": many}),
        orjson.dumps({"model": "remote", "messages": ask, "tools": [tool] * 5000}),
        deep,
    ]


async def attack(url: str, seconds: float, key: str | None = None) -> dict[int, int]:
    """Every hostile kind in a loop and 240 held streams, for `seconds`; answers by status."""
    bodies = hostile_bodies()
    statuses: dict[int, int] = {}
    stream = orjson.dumps(
        {
            "model": "remote",
            "stream": True,
            "messages": [{"role": "user", "content": "hold on"}],
            "metadata": {"fault": "stall", "after": "1"},
        }
    )
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    timeout = aiohttp.ClientTimeout(total=seconds + 30)
    connector = aiohttp.TCPConnector(limit=0)  # the held streams must not queue the others
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def hold() -> None:  # a stream held open until the attack ends
            async with session.post(url, data=stream, headers=headers) as response:
                await response.content.readline()
                await asyncio.sleep(seconds)

        async def hostile(body: bytes) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1

        await asyncio.gather(*(hold() for _ in range(240)), *(hostile(b) for b in bodies))
    return statuses
