"""No client can stall the gateway (a short version of bench/hostile.py): a canary polling
`/healthz` every 50 ms through `cascade serve` never waits more than 250 ms while other
clients send, together, a 4,000-value draft-04 enum schema, a backtracking `pattern`, a 1 MB
body of 2,048 messages, 5,000 tools, JSON nested past any parser's depth, and 240 streams
held open by one team."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import aiohttp
import orjson
import requests

from tests.support.processes import ServerProcess, free_port, start
from tests.support.processes import start_cascade as start_cascade_process


def _hostile_bodies() -> list[bytes]:
    draft4 = "http://json-schema.org/draft-04/schema#"
    values = [{"k": i} for i in range(4000)]
    enum = {"$schema": draft4, "type": "object", "properties": {"x": {"enum": values}}}
    pattern = {"type": "object", "properties": {"a": {"type": "string", "pattern": "^(a+)+$"}}}
    ask = [{"role": "user", "content": "a" * 28 + "!"}]

    def schema(found: dict[str, object]) -> bytes:
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


async def _attack(url: str, seconds: float, key: str | None = None) -> dict[int, int]:
    """Every hostile kind in a loop and 240 held streams, for `seconds`; answers by status."""
    bodies = _hostile_bodies()
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


def test_a_canary_is_answered_promptly_under_every_hostile_request(tmp_path: Path) -> None:
    port = free_port()
    upstream: ServerProcess = start(
        ["-m", "tests.support.billing_upstream", "--port", str(port), "--name", "stalling"],
        port,
        "/v1/models",
        tmp_path / "upstream.log",
    )
    (tmp_path / "policy.yaml").write_text(f"""
tiers:
  large:
    type: openai
    api_base: "{upstream.url}/v1"
    model: billed
    timeout_s: 30
    max_concurrency: 512
    max_queue: 1024
routes:
  remote: {{cascade: [{{tier: large}}]}}
""")
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    server = start_cascade_process(tmp_path / "policy.yaml", ledger, tmp_path / "cascade.log")
    waits: list[float] = []
    done = threading.Event()

    def canary() -> None:
        with requests.Session() as session:
            while not done.is_set():
                asked = time.perf_counter()
                assert session.get(f"{server.url}/healthz", timeout=5).status_code == 200
                waits.append(time.perf_counter() - asked)
                time.sleep(0.05)

    watcher = threading.Thread(target=canary)
    try:
        watcher.start()
        statuses = asyncio.run(_attack(f"{server.url}/v1/chat/completions", seconds=3.0))
    finally:
        done.set()
        watcher.join()
        server.stop()
        upstream.stop()
    print(f"canary: {len(waits)} polls, worst {max(waits) * 1000:.0f} ms; hostile: {statuses}")
    assert len(waits) > 20 and max(waits) <= 0.25
    # the schema, body, tools and depth limits refuse four kinds at once; the pattern is a
    # valid schema, served, its answer checked in linear time
    assert statuses[400] > statuses.get(200, 0) > 0
