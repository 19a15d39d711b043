"""Benchmark (l): Redis operations per request, for sizing the Redis a deployment shares.

    python bench/redis_ops.py [--requests 400]

One `cascade serve` in front of the fake upstream with everything shared in one
redis-server: the ledger (Redis Stream), a team's budget and rates (`budgets.store: redis`),
and the response cache (`CASCADE_CACHE=redis://...`). Requests with a key of that team,
temperature 0; the second half repeats the first (cache hits). Commands counted by Redis
itself (INFO commandstats) before and after, per request; Lua scripts count as one EVALSHA
(the budget's reserve and settle), each with the few keys it touches inside.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
from pathlib import Path

import aiohttp
import redis

from bench.common import WORK, append_results
from tests.support.processes import start_cascade, start_fake_upstream
from tests.support.redis_server import RedisServer

KEY = "sk-bench-redis-ops"


def commands(url: str) -> dict[str, int]:
    with redis.Redis.from_url(url) as client:
        stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


async def send(url: str, bodies: list[dict[str, object]]) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession() as session:
        for body in bodies:
            async with session.post(
                f"{url}/v1/chat/completions", json=body, headers=headers
            ) as response:
                assert response.status == 200, await response.text()
                await response.read()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    server_redis = RedisServer(WORK / "redis-ops")
    server_redis.start()
    upstream = start_fake_upstream(WORK / "redis-ops-fake.log")
    policy = WORK / "redis-ops.yaml"
    policy.write_text(f"""
tiers:
  large: {{type: openai, api_base: "{upstream.url}/v1", model: fake,
          price: {{input_per_1m: 1.0, output_per_1m: 2.0}}}}
routes: {{auto: {{cascade: [{{tier: large}}]}}}}
teams:
  bench:
    keys: [{{sha256: {hashlib.sha256(KEY.encode()).hexdigest()}}}]
    limits: {{usd_per_day: 1000, requests_per_minute: 100000}}
budgets: {{store: redis}}
""")
    half = args.requests // 2
    bodies: list[dict[str, object]] = [
        {
            "model": "auto",
            "temperature": 0,
            "max_tokens": 8,
            "messages": [{"role": "user", "content": f"question {n}"}],
        }
        for n in range(half)
    ]
    server = start_cascade(
        policy,
        server_redis.url,
        WORK / "redis-ops.log",
        env={"CASCADE_REDIS_URL": server_redis.url, "CASCADE_CACHE": server_redis.url},
    )
    try:
        asyncio.run(send(server.url, bodies[:5]))  # scripts loaded, connections open
        before = commands(server_redis.url)
        asyncio.run(send(server.url, bodies[5:]))
        misses = len(bodies) - 5
        middle = commands(server_redis.url)
        asyncio.run(send(server.url, bodies[5:]))  # the same again: cache hits
        after = commands(server_redis.url)
    finally:
        server.stop()
        upstream.stop()
        server_redis.stop()

    def per_request(start: dict[str, int], end: dict[str, int]) -> dict[str, float]:
        return {
            name: (end[name] - start.get(name, 0)) / misses
            for name in sorted(end)
            if end[name] - start.get(name, 0) and name not in ("info", "ping")
        }

    rows = []
    for label, counted in (
        ("a miss (answered by the tier, stored)", per_request(before, middle)),
        ("a hit (answered from the cache)", per_request(middle, after)),
    ):
        detail = ", ".join(f"{name} {value:.2f}" for name, value in counted.items())
        rows.append([label, f"**{sum(counted.values()):.2f}**", detail])
    print(rows)
    append_results(
        "(l) Redis operations per request (ledger, budgets, cache in one Redis)",
        ["request", "commands per request", "by command"],
        rows,
        notes="bench/redis_ops.py. One cascade serve; CASCADE_LEDGER, budgets.store and "
        "CASCADE_CACHE on one redis-server; a team with a day budget and a rate limit; "
        f"{misses} distinct deterministic requests, then the same again. Counted by Redis "
        "(INFO commandstats), which counts the commands the budget's Lua scripts run inside; "
        "the round trips are the EVALSHAs, the cache's GET (and SET on a miss) and the "
        "ledger's XADD (batched: one per ≤ 10 ms of records).",
    )


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parents[1])
    main()
