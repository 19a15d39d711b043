"""Budgets and rate limits through real `cascade serve` processes sharing a real
redis-server: concurrent requests never spend past a team's budget, rate limits answer 429
with OpenAI's headers and the SDK's own retry recovers, a team near its budget is routed to
its local tier, and a Redis outage fails closed or open as the policy says."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import openai
import pytest
import redis as redis_client
import requests

from tests.support.cascade import Cascade, StartCascade, read_ledger
from tests.support.processes import ServerProcess
from tests.support.processes import start_cascade as start_cascade_process
from tests.support.redis_server import RedisServer

ASK = [{"role": "user", "content": "Hi"}]
SEARCH_KEY = "sk-search"
SEARCH_HASH = hashlib.sha256(SEARCH_KEY.encode()).hexdigest()
COST = 6e-6  # the fake's 6 completion tokens at $1 per 1M output tokens


@pytest.fixture(scope="module")
def upstream(start_fake_upstream: Callable[..., ServerProcess]) -> ServerProcess:
    return start_fake_upstream()


def priced(upstream: ServerProcess) -> str:
    # Only output is priced: a request's reservation (max_tokens 6) is exactly its cost.
    return f"""
  large:
    type: openai
    api_base: "{upstream.url}/v1"
    model: capable-model
    price: {{input_per_1m: 0.0, output_per_1m: 1.0}}
    max_concurrency: 4096
    max_queue: 4096"""


def test_a_thousand_concurrent_requests_through_two_servers_never_pass_the_budget(
    tmp_path: Path, redis: RedisServer, upstream: ServerProcess
) -> None:
    cap = 100 * COST  # admits 100 of them
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""
tiers: {priced(upstream)}
routes:
  auto: {{cascade: [{{tier: large}}]}}
teams:
  search:
    keys: [{{sha256: {SEARCH_HASH}}}]
    limits: {{usd_per_day: {cap}}}
budgets: {{store: redis}}
""")
    env = {"CASCADE_REDIS_URL": redis.url, "CASCADE_MAX_CONNECTIONS_PER_IP": "0"}
    servers = [
        start_cascade_process(
            policy,
            f"sqlite:///{tmp_path / f'ledger{i}.db'}",
            tmp_path / f"server{i}.log",
            *flags,
            env=env,
        )
        for i, flags in enumerate([(), ("--workers", "2")])
    ]
    try:
        statuses = asyncio.run(_flood([s.url for s in servers], 1000))
    finally:
        for server in servers:
            server.stop()
    admitted = statuses.count(200)
    assert admitted == 100 and statuses.count(429) == 900
    found = [r for i in range(2) for r in read_ledger(f"sqlite:///{tmp_path / f'ledger{i}.db'}")]
    records = [r for r in found if r.get("kind") is None]
    spent = sum(r["cost_usd"] for r in records)
    assert len(records) == admitted  # refusals are counted, not recorded one by one:
    summaries = [c for r in found if r.get("kind") == "rejections" for c in r["counts"]]
    assert sum(c["count"] for c in summaries) == 900  # a summary a second per team
    assert spent <= cap + COST + 1e-12
    day = time.strftime("%Y-%m-%d", time.gmtime())  # the ledger agrees with redis
    key = f"cascade:lim:{{team:search}}:usd:d:{day}"
    with redis_client.Redis.from_url(redis.url) as client:
        counted = client.get(key)
    assert counted is not None and int(counted) == round(spent * 1e9)


async def _flood(urls: list[str], count: int) -> list[int]:
    body = {"model": "auto", "messages": ASK, "max_tokens": 6}
    headers = {"Authorization": f"Bearer {SEARCH_KEY}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(index: int) -> int:
            url = f"{urls[index % len(urls)]}/v1/chat/completions"
            async with session.post(url, json=body, headers=headers) as response:
                await response.read()
                return response.status

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def keyed(team: str) -> tuple[str, str]:
    key = f"sk-{team}-key"
    return key, hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def limited(start_cascade: StartCascade, upstream: ServerProcess, redis: RedisServer) -> Cascade:
    """Team `rates`: 2 requests per 2 s window; team `thrifty`: a day budget of two large
    answers, local answers from half of it, local only at it; team `strict`: refused at it."""
    own = {"keyed": ", limits: {requests_per_minute: 1}"}  # the key's own, beside its team's
    teams = "\n".join(
        f"  {team}:\n    keys: [{{sha256: {keyed(team)[1]}{own.get(team, '')}}}]\n    {spec}"
        for team, spec in (
            ("rates", "limits: {requests_per_minute: 2, tokens_per_minute: 100000}"),
            (
                "thrifty",
                f"limits: {{usd_per_day: {2 * COST}}}\n"
                "    budget_routing: {degrade_at: 0.5, at_limit: local}",
            ),
            ("strict", f"limits: {{usd_per_day: {COST}}}"),
            ("keyed", f"limits: {{usd_per_day: {100 * COST}}}"),
            ("admin", ""),
        )
    )
    return start_cascade(
        f"""
tiers:
  small: {{type: llama_cpp}}{priced(upstream)}
routes:
  auto:
    cascade: [{{tier: small, acceptance: {{threshold: 0.99}}}}, {{tier: large}}]
teams:
{teams}
budgets: {{store: redis, rate_window_s: 2}}
""",
        env={"CASCADE_REDIS_URL": redis.url},
    )


def sdk(cascade: Cascade, team: str, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{cascade.url}/v1", api_key=keyed(team)[0], max_retries=retries)


def test_rate_limits_answer_429_with_openai_headers_and_the_sdk_retry_recovers(
    limited: Cascade,
) -> None:
    with sdk(limited, "rates") as client:
        time.sleep(2 - time.time() % 2 + 0.05)  # the start of a 2 s window
        first = client.chat.completions.with_raw_response.create(
            model="large", messages=ASK, max_tokens=6
        )
        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        assert first.headers["x-ratelimit-limit-tokens"] == "100000"
        client.chat.completions.create(model="large", messages=ASK, max_tokens=6)
        with pytest.raises(openai.RateLimitError) as error:
            client.chat.completions.create(model="large", messages=ASK, max_tokens=6)
        refused = error.value.response
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(refused.headers["Retry-After"]) <= 2
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    with sdk(limited, "rates", retries=3) as client:  # the SDK waits out Retry-After itself
        answer = client.chat.completions.create(model="large", messages=ASK, max_tokens=6)
        assert answer.choices[0].message.content


def test_a_team_near_its_budget_gets_local_answers_then_local_only(limited: Cascade) -> None:
    with sdk(limited, "thrifty") as client:
        raw = client.chat.completions.with_raw_response.create(
            model="large", messages=ASK, max_tokens=6
        )
        assert raw.headers["x-cascade-budget-remaining"] == f"{COST:.6f}"
        assert limited.record(raw.headers["x-request-id"])["budget"]["decision"] == "ok"
        # Half spent: no escalation beyond the local tier, answers marked degraded.
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=ASK, max_tokens=6, stream=True
        )
        "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
        assert (raw.headers["x-cascade-tier"], raw.headers["x-cascade-degraded"]) == (
            "small",
            "true",
        )
        assert raw.headers["x-cascade-budget-remaining"] == f"{COST:.6f}"
        record = limited.record(raw.headers["x-request-id"])
        assert (record["budget"]["decision"], record["status"]) == ("degraded", "degraded")
        assert record["budget"]["share"] == pytest.approx(0.5)
        assert [a["tier"] for a in record["attempts"]] == ["small"]
        # Another large answer fits exactly; then the budget is spent: local tiers only.
        client.chat.completions.create(model="large", messages=ASK, max_tokens=6)
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=ASK, max_tokens=6
        )
        assert raw.headers["x-cascade-tier"] == "small"
        assert limited.record(raw.headers["x-request-id"])["budget"]["decision"] == "local_only"
        with pytest.raises(openai.RateLimitError) as error:  # a route with no local tier
            client.chat.completions.create(model="large", messages=ASK, max_tokens=6)
        assert error.value.body["code"] == "budget_exceeded"  # type: ignore[index]


def test_a_team_at_its_budget_is_refused_until_the_day_ends(limited: Cascade) -> None:
    with sdk(limited, "strict") as client:
        client.chat.completions.create(model="large", messages=ASK, max_tokens=6)
        with pytest.raises(openai.RateLimitError) as error:
            client.chat.completions.create(model="large", messages=ASK, max_tokens=6)
    response = error.value.response
    assert response.json()["error"]["type"] == "insufficient_quota"
    until_midnight = 86_400 - time.time() % 86_400
    assert abs(int(response.headers["Retry-After"]) - until_midnight) < 5
    own = requests.get(
        f"{limited.url}/v1/spend",
        headers={"Authorization": f"Bearer {keyed('strict')[0]}"},
        timeout=10,
    ).json()
    assert own["spent_usd"]["day"] == pytest.approx(COST) and own["remaining_usd"] == 0
    other = requests.get(
        f"{limited.url}/v1/spend?team=thrifty",
        headers={"Authorization": f"Bearer {keyed('strict')[0]}"},
        timeout=10,
    )
    assert other.status_code == 403  # a team's key sees its own team only


def test_a_team_without_limits_has_its_spend_counted_too(limited: Cascade) -> None:
    """Every team the policy names is counted, so /v1/spend answers for it."""
    key = keyed("admin")[0]  # team admin: keys, no limits
    before = requests.get(
        f"{limited.url}/v1/spend", headers={"Authorization": f"Bearer {key}"}, timeout=10
    ).json()
    with sdk(limited, "admin") as client:
        client.chat.completions.create(model="large", messages=ASK, max_tokens=6)
        stream = client.chat.completions.create(
            model="large", messages=ASK, max_tokens=6, stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    after = requests.get(
        f"{limited.url}/v1/spend", headers={"Authorization": f"Bearer {key}"}, timeout=10
    ).json()
    assert (after["team"], after["limits"], after["remaining_usd"]) == ("admin", None, None)
    spent = after["spent_usd"]["day"] - before["spent_usd"]["day"]
    assert spent == pytest.approx(2 * COST)  # whole and streamed, each counted once


@pytest.mark.parametrize("mode", ["fail_closed", "fail_open"])
def test_a_redis_outage_fails_closed_or_open(
    tmp_path: Path, upstream: ServerProcess, mode: str
) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    policy = tmp_path / "policy.yaml"
    key, digest = keyed("ops")
    policy.write_text(f"""
tiers: {priced(upstream)}
routes: {{auto: {{cascade: [{{tier: large}}]}}}}
teams: {{ops: {{keys: [{{sha256: {digest}}}], limits: {{usd_per_day: 1.0}}}}}}
budgets: {{store: redis, on_store_error: {mode}}}
""")
    server = start_cascade_process(
        policy,
        f"sqlite:///{tmp_path / 'ledger.db'}",
        tmp_path / "server.log",
        env={"CASCADE_REDIS_URL": redis.url},
    )
    try:
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0) as client:
            client.chat.completions.create(model="auto", messages=ASK, max_tokens=6)
            redis.stop()
            # what a lease already took from Redis is admitted until its next renewal fails
            # (within budgets.leases.flush_s, 0.5 s): then the outage's own semantics apply
            time.sleep(1.2)
            if mode == "fail_closed":
                with pytest.raises(openai.InternalServerError) as error:
                    client.chat.completions.create(model="auto", messages=ASK, max_tokens=6)
                assert error.value.status_code == 503
                assert error.value.body["code"] == "budget_store_unavailable"  # type: ignore[index]
            else:
                client.chat.completions.create(model="auto", messages=ASK, max_tokens=6)
            redis.start()
            client.chat.completions.create(model="auto", messages=ASK, max_tokens=6)
        day = time.strftime("%Y-%m-%d", time.gmtime())
        counted, deadline = 0, time.monotonic() + 5
        with redis_client.Redis.from_url(redis.url) as shared:
            while counted < round(2 * COST * 1e9) and time.monotonic() < deadline:
                time.sleep(0.1)  # a lease sends what it settled every 0.5 s
                counted = int(shared.get(f"cascade:lim:{{team:ops}}:usd:d:{day}") or 0)
            time.sleep(1.0)  # and nothing more arrives later
            counted = int(shared.get(f"cascade:lim:{{team:ops}}:usd:d:{day}") or 0)
        assert counted == round(2 * COST * 1e9)  # before and after; none counted twice
        assert "budget_store_unavailable" in server.log()
    finally:
        server.stop()
        redis.stop()


def test_a_keys_own_limit_refuses_and_gives_its_teams_claim_back(limited: Cascade) -> None:
    key, digest = keyed("keyed")
    with sdk(limited, "keyed") as client:
        time.sleep(2 - time.time() % 2 + 0.05)  # the start of a 2 s window
        client.chat.completions.create(model="large", messages=ASK, max_tokens=6)
        with pytest.raises(openai.RateLimitError) as error:
            client.chat.completions.create(model="large", messages=ASK, max_tokens=6)
    assert error.value.body["message"].startswith(f"API key {digest[:12]} has reached")  # type: ignore[index]
    spend = requests.get(
        f"{limited.url}/v1/spend", headers={"Authorization": f"Bearer {key}"}, timeout=10
    ).json()
    assert spend["reserved_usd"] == 0  # the refused request holds nothing of the team's
    assert spend["spent_usd"]["day"] == pytest.approx(COST)


def test_a_killed_servers_lease_is_released_within_its_ttl(
    tmp_path: Path, redis: RedisServer, upstream: ServerProcess
) -> None:
    """SIGKILL a server that holds a lease: its slice (and any claim) is released within
    `leases.ttl_s`, after which another server admits up to the cap less what Redis counted
    for the dead one; nothing is counted twice."""
    cap = 16 * COST
    key, digest = keyed("killed")
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""
tiers: {priced(upstream)}
routes: {{auto: {{cascade: [{{tier: large}}]}}}}
teams:
  killed: {{keys: [{{sha256: {digest}}}], limits: {{usd_per_day: {cap}}}}}
budgets: {{store: redis, leases: {{ttl_s: 1.5}}}}
""")
    env = {"CASCADE_REDIS_URL": redis.url}
    dead, alive = (
        start_cascade_process(policy, "none", tmp_path / f"{name}.log", env=env)
        for name in ("dead", "alive")
    )
    day = time.strftime("%Y-%m-%d", time.gmtime())
    prefix = "cascade:lim:{team:killed}"
    body = {"model": "auto", "messages": ASK, "max_tokens": 6}
    headers = {"Authorization": f"Bearer {key}"}
    try:
        first = requests.post(
            f"{dead.url}/v1/chat/completions", json=body, headers=headers, timeout=10
        )
        assert first.status_code == 200
        dead.process.kill()  # SIGKILL: no flush, no goodbye
        dead.process.wait()
        with redis_client.Redis.from_url(redis.url) as shared:
            held = int(shared.get(f"{prefix}:reserved") or 0)
            assert held >= round(COST * 1e9)  # its lease: at least a slice of one request
            counted_dead = int(shared.get(f"{prefix}:usd:d:{day}") or 0)
            time.sleep(2.0)  # past ttl_s
            statuses = [
                requests.post(
                    f"{alive.url}/v1/chat/completions", json=body, headers=headers, timeout=10
                ).status_code
                for _ in range(20)
            ]
        admitted = statuses.count(200)
        # the dead server's slice is back: the other admits all the cap leaves, less what
        # the dead one flushed before it died (its one request, or nothing)
        assert counted_dead in (0, round(COST * 1e9))
        assert admitted == 16 - counted_dead // round(COST * 1e9)
        assert statuses.count(429) == 20 - admitted
    finally:
        alive.stop()
    with redis_client.Redis.from_url(redis.url) as shared:
        counted = int(shared.get(f"{prefix}:usd:d:{day}") or 0)
        assert int(shared.get(f"{prefix}:reserved") or 0) == 0  # the live one gave its back
    assert counted == counted_dead + round(admitted * COST * 1e9)  # each counted once
