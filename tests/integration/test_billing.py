"""The ledger equals the provider's bill: a mixed workload through `cascade serve` against
upstreams that bill as providers do (tests/support/billing_upstream.py: their own tokenizer,
images by formula, tokens generated until they see the connection close).

2,000+ requests from three teams, whole and streamed, with tools, tool calls, images, `n`,
structured output, the Responses API and embeddings; clients that leave at random points;
streams cut, stalled and ended without `[DONE]`; a primary that refuses (the fallback
answers, after a retry when it is unavailable); repeated requests served from the cache.
Every provider answer is matched to its attempt by the provider's id: those the provider
reported usage for agree exactly, the difference of each team is within 1% of its bill, and
all of it is on estimated attempts."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import struct
import subprocess
import sys
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from tests.support.cascade import read_ledger
from tests.support.keys import team_keys
from tests.support.processes import ServerProcess, free_port, start
from tests.support.processes import start_cascade as start_cascade_process

TEAMS = ("alpha", "beta", "gamma")
KEYS = {team: f"sk-{team}-billing" for team in TEAMS}
REQUESTS = 2100
CONCURRENCY = 32


def _upstream(folder: Path, name: str) -> ServerProcess:
    port = free_port()
    args = ["-m", "tests.support.billing_upstream", "--port", str(port), "--name", name]
    return start(args, port, "/v1/models", folder / f"{name}.log")


def _policy(primary: ServerProcess, secondary: ServerProcess) -> str:
    keys = team_keys(KEYS)
    tier = """    type: openai
    model: billed
    price: {{input_per_1m: 1.0, output_per_1m: 2.0}}
    timeout_s: 1.5
    max_concurrency: 256
    max_queue: 1024
    api_base: "{url}/v1"
    breaker: {{consecutive_failures: 1000, failure_rate: 1.0}}"""
    return f"""
tiers:
  primary:
{tier.format(url=primary.url)}
  secondary:
{tier.format(url=secondary.url)}
routes:
  remote:
    cascade: [{{tier: primary}}]
    fallbacks: {{primary: [secondary]}}
    cache: {{store: memory}}
teams:
{keys}
limits: {{max_output_tokens: 256, default_max_tokens: 48, max_prompt_tokens: 100000}}
"""


def _png(width: int, height: int) -> str:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    data = (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )
    return "data:image/png;base64," + base64.b64encode(data + b"\x00" * 3000).decode()


TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look up an order by its number and return its status.",
        "parameters": {"type": "object", "properties": {"order": {"type": "string"}}},
    },
}
WORDS = ("billing", "ledger", "cascade", "provider", "tokens", "answer", "stream", "team")


def _question(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 60))) + "?"


def _chat(rng: random.Random, team: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "remote",
        "user": team,
        "messages": [{"role": "user", "content": _question(rng)}],
        "max_tokens": rng.choice([16, 32, 48]),
    }
    shape = rng.random()
    if shape < 0.15:
        body["tools"] = [TOOL] * rng.randint(1, 8)
    elif shape < 0.25:
        part = {"type": "image_url", "image_url": {"url": _png(rng.randint(64, 2048), 512)}}
        body["messages"] = [{"role": "user", "content": [{"type": "text", "text": "what?"}, part]}]
    elif shape < 0.35:
        body["n"] = rng.choice([2, 3])
    elif shape < 0.45:
        call = {
            "id": "c1",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"order": "A-1"}'},
        }
        body["messages"] += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "shipped on Monday"},
        ]
    elif shape < 0.5:
        schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": schema},
        }
    return body


def _fault(fault: float, rng: random.Random) -> dict[str, str]:
    """What the provider is asked to do wrong (by `metadata`, passed on as sent)."""
    if fault < 0.04:
        return {"fault": "cut", "after": str(rng.randint(1, 12))}
    if fault < 0.06:
        return {"fault": "stall", "after": str(rng.randint(1, 12))}
    if fault < 0.09:
        return {"fault": "no_done"}
    if fault < 0.13:  # the primary refuses: the fallback answers
        return {"fault": "error500", "fault_on": "primary"}
    if fault < 0.15:  # the primary is unavailable: retried, then the fallback answers
        return {"fault": "error503", "fault_on": "primary"}
    return {}


async def _send(session: aiohttp.ClientSession, url: str, rng: random.Random, team: str) -> str:
    """One request of the mix; what it was (for the summary)."""
    headers = {"Authorization": f"Bearer {KEYS[team]}"}
    kind = rng.random()
    if kind < 0.08:
        body: dict[str, Any] = {"model": "remote", "input": _question(rng), "user": team}
        async with session.post(f"{url}/v1/embeddings", json=body, headers=headers) as r:
            await r.read()
        return "embeddings"
    if kind < 0.16:
        body = {"model": "remote", "input": _question(rng), "user": team, "max_output_tokens": 32}
        body["stream"] = rng.random() < 0.5
        async with session.post(f"{url}/v1/responses", json=body, headers=headers) as r:
            await r.read()
        return "responses"
    body = _chat(rng, team)
    if kind < 0.24:  # repeated, deterministic: the cache answers all but the first
        ask = [{"role": "user", "content": f"cached question {rng.randint(0, 9)}"}]
        body = {"model": "remote", "user": team, "temperature": 0, "max_tokens": 16}
        body["messages"] = ask
    body["stream"] = rng.random() < 0.5
    body["metadata"] = _fault(rng.random(), rng)
    if not body["metadata"]:
        del body["metadata"]
    leave = rng.random() < 0.08
    async with session.post(f"{url}/v1/chat/completions", json=body, headers=headers) as r:
        if not leave:
            await r.read()
            return "chat"
        if body["stream"]:
            for _ in range(rng.randint(0, 30)):
                if not await r.content.readline():
                    break
        else:
            await asyncio.sleep(rng.random() * 0.05)
        r.close()  # the client leaves
    return "left"


async def _workload(url: str) -> dict[str, int]:
    rng = random.Random(20261205)
    plan = [(random.Random(rng.random()), rng.choice(TEAMS)) for _ in range(REQUESTS)]
    slots = asyncio.Semaphore(CONCURRENCY)
    kinds: dict[str, int] = defaultdict(int)
    timeout = aiohttp.ClientTimeout(total=30)

    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one(seeded: random.Random, team: str) -> None:
            async with slots:
                try:
                    kinds[await _send(session, url, seeded, team)] += 1
                except (TimeoutError, aiohttp.ClientError):
                    kinds["client error"] += 1

        await asyncio.gather(*(one(seeded, team) for seeded, team in plan))
    return dict(kinds)


def test_the_ledger_equals_the_providers_bill(tmp_path: Path) -> None:
    primary, secondary = _upstream(tmp_path, "primary"), _upstream(tmp_path, "secondary")
    (tmp_path / "policy.yaml").write_text(_policy(primary, secondary))
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    server = start_cascade_process(tmp_path / "policy.yaml", ledger, tmp_path / "cascade.log")
    try:
        kinds = asyncio.run(_workload(server.url))
    finally:
        server.stop()  # the ledger is flushed as it stops
    bills = [*requests.get(f"{primary.url}/bill", timeout=10).json()]
    bills += requests.get(f"{secondary.url}/bill", timeout=10).json()
    primary.stop()
    secondary.stop()
    records = [r for r in read_ledger(ledger) if r.get("kind") is None]
    assert len(records) >= 2000

    attempts = {
        a["upstream_id"]: (r["team"], a)
        for r in records
        for a in r["attempts"]
        if a.get("upstream_id")
    }
    billed: dict[str, float] = defaultdict(float)
    recorded: dict[str, float] = defaultdict(float)
    estimated: dict[str, float] = defaultdict(float)
    for bill in bills:
        billed[bill["user"]] += bill["usd"]
        found = attempts.get(bill["id"])
        assert found is not None, bill  # every answer the provider billed is in the ledger
        _, attempt = found
        if attempt["usage_source"] == "reported":
            assert (attempt["prompt_tokens"], attempt["completion_tokens"]) == (
                bill["prompt_tokens"],
                bill["completion_tokens"],
            ), bill
    for record in records:
        for attempt in record["attempts"]:
            recorded[record["team"]] += attempt["cost_usd"]
            if attempt["usage_source"] == "estimated":
                estimated[record["team"]] += attempt["cost_usd"]
    lines = [f"{'team':<8}{'bill $':>12}{'ledger $':>12}{'diff %':>9}{'estimated $':>13}"]
    for team in TEAMS:
        difference = 100 * (recorded[team] - billed[team]) / billed[team]
        lines.append(
            f"{team:<8}{billed[team]:>12.6f}{recorded[team]:>12.6f}{difference:>9.3f}"
            f"{estimated[team]:>13.6f}"
        )
    print("\n".join(lines), f"\nrequests by kind: {kinds}; provider answers: {len(bills)}")
    for team in TEAMS:
        assert recorded[team] == pytest.approx(billed[team], rel=0.01), "\n".join(lines)
        # what is not estimated is exact: the difference is no larger than the estimated part
        assert abs(recorded[team] - billed[team]) <= estimated[team] + 1e-9
    # the same, as a platform team would run it: the provider's export against the ledger
    export = tmp_path / "usage.json"
    rows = [
        {"id": b["id"], "model": "billed", "input_tokens": b["prompt_tokens"],
         "output_tokens": b["completion_tokens"], "cost": b["usd"]}
        for b in bills
    ]  # fmt: skip
    export.write_text(json.dumps(rows))
    command = [sys.executable, "-m", "router", "audit", "--ledger", ledger]
    command += ["--reconcile", str(export), "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    report = json.loads(done.stdout)
    assert report["unmatched_provider_rows"] == 0
    for team in TEAMS:
        found = report["teams"][team]
        assert found["provider_usd"] == pytest.approx(billed[team], rel=1e-6)
        assert abs(found["difference_pct"]) < 1 and found["unmatched_attempts"] == 0


def _priced_upstream(folder: Path, name: str) -> ServerProcess:
    """A provider at $100 / $200 per 1M tokens: a request costs cents, a $1 cap is ~60."""
    port = free_port()
    args = ["-m", "tests.support.billing_upstream", "--port", str(port), "--name", name]
    args += ["--input-per-1m", "100", "--output-per-1m", "200"]
    return start(args, port, "/v1/models", folder / f"{name}.log")


COSTLY = {
    "128 tools": {"tools": [TOOL] * 128},
    "900 KB image": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": _png(768, 2048) + "A" * 900_000}},
                ],
            }
        ]
    },
    "large tool-call arguments": {
        "messages": [
            {"role": "user", "content": "go on"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": "x " * 100_000},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ]
    },
    "n 128": {"n": 128},
}


async def _burst(url: str, key: str, body: dict[str, Any], count: int, *, leave: bool) -> int:
    """`count` concurrent requests; how many were admitted (200)."""
    timeout = aiohttp.ClientTimeout(total=60)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one() -> int:
            async with session.post(url, json=body, headers=headers) as response:
                if response.status != 200:
                    await response.read()
                    return 0
                if leave:  # read up to the last content chunk, then leave before the usage
                    async for line in response.content:
                        if b'"finish_reason":"stop"' in line:
                            break
                    response.close()
                else:
                    await response.read()
                return 1

        return sum(await asyncio.gather(*(one() for _ in range(count))))


def test_no_costly_shape_spends_past_a_cap(tmp_path: Path, redis: Any) -> None:
    """200 concurrent requests of each costly shape against keys capped at $0.0001 a day: what
    the provider billed for what was admitted stays within the cap. Against a $1 team cap in
    Redis: the team's counter and the provider's bill agree, and neither passes $1."""
    upstream = _priced_upstream(tmp_path, "priced")
    shapes = [*COSTLY, "abandoned streams", "responses input_image"]
    teams = {name: f"sk-shape-{index}" for index, name in enumerate(shapes)}
    teams["dollar"] = "sk-dollar"
    lines = []
    for name, key in teams.items():
        digest = hashlib.sha256(key.encode()).hexdigest()
        if name == "dollar":  # the team's cap
            lines.append(
                f"  t{len(lines)}: {{keys: [{{sha256: {digest}}}], limits: {{usd_per_day: 1}}}}"
            )
        else:  # the key's own cap, its team unlimited
            capped = f"{{sha256: {digest}, limits: {{usd_per_day: 0.0001}}}}"
            lines.append(f"  t{len(lines)}: {{keys: [{capped}]}}")
    team_of = {name: f"t{index}" for index, name in enumerate(teams)}
    (tmp_path / "policy.yaml").write_text(f"""
tiers:
  large:
    type: openai
    api_base: "{upstream.url}/v1"
    model: billed
    price: {{input_per_1m: 100, output_per_1m: 200}}
    max_concurrency: 512
    max_queue: 2048
routes:
  remote: {{cascade: [{{tier: large}}]}}
budgets: {{store: redis}}
teams:
{chr(10).join(lines)}
limits: {{max_output_tokens: 64, default_max_tokens: 16, max_prompt_tokens: 1000000,
         max_body_bytes: 2000000}}
""")
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    server = start_cascade_process(
        tmp_path / "policy.yaml",
        ledger,
        tmp_path / "cascade.log",
        env={"CASCADE_REDIS_URL": redis.url},
    )
    chat = f"{server.url}/v1/chat/completions"
    ask = [{"role": "user", "content": "Name a prime."}]
    admitted: dict[str, int] = {}
    try:
        for name, shape in COSTLY.items():
            body = {"model": "remote", "messages": ask, "user": team_of[name], **shape}
            admitted[name] = asyncio.run(_burst(chat, teams[name], body, 200, leave=False))
        body = {"model": "remote", "messages": ask, "user": team_of["abandoned streams"]}
        body["stream"] = True
        admitted["abandoned streams"] = asyncio.run(
            _burst(chat, teams["abandoned streams"], body, 200, leave=True)
        )
        image = {"type": "input_image", "image_url": _png(768, 2048)}
        body = {
            "model": "remote",
            "user": team_of["responses input_image"],
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "?"}, image]}],
        }
        admitted["responses input_image"] = asyncio.run(
            _burst(
                f"{server.url}/v1/responses", teams["responses input_image"], body, 200, leave=False
            )
        )
        body = {"model": "remote", "messages": ask, "user": team_of["dollar"], "max_tokens": 48}
        body["stream"] = True
        admitted["dollar"] = asyncio.run(_burst(chat, teams["dollar"], body, 300, leave=True))
        spend = requests.get(
            f"{server.url}/v1/spend",
            headers={"Authorization": f"Bearer {teams['dollar']}"},
            timeout=10,
        ).json()
    finally:
        server.stop()
    bills = requests.get(f"{upstream.url}/bill", timeout=10).json()
    upstream.stop()
    billed: dict[str, float] = defaultdict(float)
    for bill in bills:
        billed[bill["user"]] += bill["usd"]
    print({name: (admitted[name], round(billed[team_of[name]], 6)) for name in teams})
    for name in shapes:
        assert billed[team_of[name]] <= 0.0001, (name, admitted[name], billed[team_of[name]])
    dollar = billed[team_of["dollar"]]
    assert 0.5 < dollar <= 1.0, admitted["dollar"]  # the cap was reached, not passed
    assert spend["spent_usd"]["day"] <= 1.0
    assert spend["spent_usd"]["day"] == pytest.approx(dollar, rel=0.01)
