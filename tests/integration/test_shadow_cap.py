"""shadow.cap_store: redis — one daily cap for every process on the same Redis (a real
redis-server): concurrent holds from several processes' runners never pass it together,
settling gives back what a check did not spend, and an unreachable Redis holds nothing."""

from __future__ import annotations

import asyncio
import time

import pytest

from router.backends.base import Completion, GenerationParams, Message, Prompt
from router.backends.spec import PriceSpec
from router.policy.model import ShadowSpec
from router.shadow.cap import RedisCap
from router.shadow.runner import ShadowJob, ShadowRecord, ShadowRunner
from tests.support.fakes import FakeBackend, Script
from tests.support.redis_server import RedisServer

DAY = "2026-12-02"


async def test_concurrent_holds_from_many_clients_stop_at_the_cap(redis: RedisServer) -> None:
    errors: list[Exception] = []
    caps = [RedisCap(redis.url, errors.append) for _ in range(4)]  # four processes' clients
    try:
        held = await asyncio.gather(
            *(cap.hold("auto", DAY, 10, 100) for cap in caps for _ in range(25))
        )
        assert held.count(True) == 10 and held.count(False) == 90
        await caps[0].settle("auto", DAY, -40)  # four checks cost nothing after all
        more = await asyncio.gather(*(caps[1].hold("auto", DAY, 10, 100) for _ in range(10)))
        assert more.count(True) == 4
        assert await caps[2].hold("other", DAY, 100, 100)  # routes have their own days
        assert not await caps[2].hold("auto", "2026-12-01", 101, 100)  # so do days
    finally:
        for cap in caps:
            await cap.aclose()
    assert errors == []


async def test_an_unreachable_redis_holds_nothing() -> None:
    errors: list[Exception] = []
    cap = RedisCap("redis://127.0.0.1:1/0", errors.append)
    try:
        assert await cap.hold("auto", DAY, 1, 100) is None
    finally:
        await cap.aclose()
    assert len(errors) == 1


def _job(large: FakeBackend, spec: ShadowSpec, n: int) -> ShadowJob:
    local = Completion("Paris", "stop", 5, 1, "small-model", token_logprobs=[-0.1])
    record = ShadowRecord(
        request_id=f"shadow-{n}",
        shadow_of=f"req-{n}",
        team="t",
        route="auto",
        policy_version="v",
        judge=spec.judge,
        local_tier="small",
        local_model=local.model,
        reference_tier="large",
    )
    return ShadowJob(
        record,
        spec,
        Prompt(messages=(Message("user", "What is the capital of France?"),)),
        GenerationParams(16),
        "Paris",
        backend=large,
        # 1 prompt and 3 answer tokens at $25,000 per million: each check costs what it
        # holds, $0.1, so the day fills by exactly that much per check
        price=PriceSpec(input_per_1m=25_000.0, output_per_1m=25_000.0),
        max_cost_usd=0.1,
    )


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_two_processes_runners_share_one_day_only_through_redis(
    redis: RedisServer, store: str
) -> None:
    """Two runners (two workers) with a cap of $0.5 and checks holding $0.1 each: through
    Redis both together run 5; each keeping its own day, each runs 5."""
    spec = ShadowSpec(rate=1.0, usd_per_day=0.5, cap_store=store)  # type: ignore[arg-type]
    records: list[ShadowRecord] = []
    counted: list[str] = []
    route = f"auto-{store}-{time.monotonic_ns()}"
    runners = [
        ShadowRunner(
            records.append,
            lambda _, result: counted.append(result),
            shared_cap=RedisCap(redis.url, print),
        )
        for _ in range(2)
    ]
    large = FakeBackend("large", [Script("It is Paris.", None)])
    for runner in runners:
        runner.start()
    try:
        for n in range(16):
            job = _job(large, spec, n)
            job.record.route = route
            runners[n % 2].offer(job)
        for _ in range(400):
            if len(records) + counted.count("capped") >= 16:
                break
            await asyncio.sleep(0.01)
    finally:
        for runner in runners:
            await runner.aclose()
    expected = 5 if store == "redis" else 10
    assert len(records) == expected and counted.count("capped") == 16 - expected
    spent = sum(r.cost_usd for r in records)
    assert spent == pytest.approx(0.1 * expected)
