"""The budget and rate counters' contract, run against every store: this process's
(MemoryStore), a real redis-server (RedisStore, Lua) and per-process leases on it
(LeasedStore; its own behaviour is in test_leases.py). Concurrent claims never admit more
than a cap allows; settling replaces a reservation with the actual cost; a reservation a
crashed process never settled expires; fail-open falls back to local counters and never
charges twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from router.budgets.leases import LeasedStore
from router.budgets.store import (
    NANO,
    Ask,
    Caps,
    FailOpen,
    MemoryStore,
    RedisStore,
    Store,
    StoreUnavailable,
    Windows,
)
from tests.support.redis_server import RedisServer


def _open(kind: str, redis: RedisServer) -> Store:
    if kind == "memory":
        return MemoryStore()
    return RedisStore(redis.url) if kind == "redis" else LeasedStore(redis.url)


@pytest.fixture(params=["memory", "redis", "leased"])
async def store(request: pytest.FixtureRequest, redis: RedisServer) -> AsyncIterator[Store]:
    found = _open(request.param, redis)
    yield found
    await found.aclose()


@pytest.fixture(params=["memory", "redis"])
async def per_request_store(
    request: pytest.FixtureRequest, redis: RedisServer
) -> AsyncIterator[Store]:
    """Stores that hold a reservation per request (a lease's expiry: test_leases.py)."""
    found = _open(request.param, redis)
    yield found
    await found.aclose()


def scope(name: str) -> str:
    return f"team:{name}-{time.monotonic_ns()}"  # fresh counters per test and store


async def test_concurrent_claims_never_pass_the_cap(store: Store) -> None:
    caps = Caps(nano_per_day=100 * NANO // 1000)  # $0.1: 100 claims of $0.001
    windows, name = Windows.at(time.time()), scope("cap")
    claims = [Ask(name, f"r{i}", NANO // 1000, 10) for i in range(1000)]
    found = await asyncio.gather(*(store.reserve(ask, caps, windows, 60) for ask in claims))
    admitted = [ask for ask, standing in zip(claims, found, strict=True) if standing.admitted]
    assert len(admitted) == 100
    assert {s.refused_by for s in found if not s.admitted} == {"usd_per_day"}
    await asyncio.gather(*(store.settle(ask, windows, ask.cost_nano // 2, 5) for ask in admitted))
    after = await store.standing(name, windows)
    assert (after.spent_day_nano, after.spent_month_nano, after.reserved_nano) == (
        50 * NANO // 1000,
        50 * NANO // 1000,
        0,
    )


async def test_rates_count_requests_and_tokens_per_window(store: Store) -> None:
    caps = Caps(requests_per_minute=3, tokens_per_minute=100)
    windows, name = Windows.at(time.time()), scope("rate")
    first = await store.reserve(Ask(name, "a", 0, 60), caps, windows, 60)
    assert (first.admitted, first.requests, first.tokens) == (True, 1, 60)
    too_many_tokens = await store.reserve(Ask(name, "b", 0, 50), caps, windows, 60)
    assert (too_many_tokens.admitted, too_many_tokens.refused_by) == (False, "tokens")
    await store.settle(Ask(name, "a", 0, 60), windows, 0, 20)  # it used 20 of its 60
    assert (await store.reserve(Ask(name, "c", 0, 50), caps, windows, 60)).admitted
    assert (await store.reserve(Ask(name, "d", 0, 1), caps, windows, 60)).admitted
    refused = await store.reserve(Ask(name, "e", 0, 1), caps, windows, 60)
    assert (refused.admitted, refused.refused_by, refused.requests) == (False, "requests", 3)
    later = Windows.at(time.time() + 60)  # the next minute starts from zero
    assert (await store.reserve(Ask(name, "f", 0, 1), caps, later, 60)).admitted


async def test_an_unsettled_reservation_expires(per_request_store: Store) -> None:
    store = per_request_store
    caps = Caps(nano_per_day=NANO)
    windows, name = Windows.at(time.time()), scope("crash")
    crashed = await store.reserve(Ask(name, "lost", NANO, 1), caps, windows, ttl_s=0.2)
    assert crashed.admitted and crashed.reserved_nano == NANO
    assert not (await store.reserve(Ask(name, "next", 1, 1), caps, windows, 60)).admitted
    await asyncio.sleep(0.3)
    again = await store.reserve(Ask(name, "next", 1, 1), caps, windows, 60)
    assert again.admitted and again.reserved_nano == 1  # the crashed one was released


async def test_month_budget_and_windows_roll_at_utc_boundaries(store: Store) -> None:
    caps = Caps(nano_per_month=10)
    name = scope("month")
    may = Windows.at(1_748_735_999)  # 2025-05-31T23:59:59Z
    assert (may.day, may.month, round(may.day_reset_s), round(may.month_reset_s)) == (
        "2025-05-31",
        "2025-05",
        1,
        1,
    )
    ask = Ask(name, "a", 10, 1)
    assert (await store.reserve(ask, caps, may, 60)).admitted
    await store.settle(ask, may, 10, 1)
    over = await store.reserve(Ask(name, "b", 1, 1), caps, may, 60)
    assert (over.admitted, over.refused_by) == (False, "usd_per_month")
    june = Windows.at(1_748_736_000)
    assert (await store.reserve(Ask(name, "c", 1, 1), caps, june, 60)).admitted


async def test_fail_open_uses_local_counters_and_never_charges_twice(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    errors: list[Exception] = []
    shared, local = RedisStore(redis.url, timeout_s=0.5), MemoryStore()
    store = FailOpen(shared, local, errors.append)
    caps, windows, name = Caps(nano_per_day=3), Windows.at(time.time()), scope("open")
    try:
        before = Ask(name, "before", 1, 1)
        assert (await store.reserve(before, caps, windows, 60)).admitted  # in redis
        redis.stop()
        during = [Ask(name, f"d{i}", 1, 1) for i in range(4)]
        found = [await store.reserve(ask, caps, windows, 60) for ask in during]
        assert [s.admitted for s in found] == [True, True, True, False]  # the local cap
        assert errors and isinstance(errors[0], StoreUnavailable)
        for ask in during[:3]:
            await store.settle(ask, windows, 1, 1)  # settled locally, not in redis
        redis.start()
        await store.settle(before, windows, 1, 1)
        shared_now = await shared.standing(name, windows)
        assert (shared_now.spent_day_nano, shared_now.reserved_nano) == (1, 0)
        assert (await local.standing(name, windows)).spent_day_nano == 3
    finally:
        await store.aclose()
        redis.stop()


async def test_a_store_that_is_down_is_unavailable(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")  # never started
    store = RedisStore(redis.url, timeout_s=0.2)
    with pytest.raises(StoreUnavailable):
        await store.reserve(Ask("team:x", "a", 1, 1), Caps(), Windows.at(time.time()), 60)
    await store.aclose()
