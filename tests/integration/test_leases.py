"""Leases on a real redis-server (router/budgets/leases.py): requests admitted from a slice
cost no call to Redis; two processes together never pass a cap; a process that dies gives
its slice back within the lease's TTL; a flush whose reply was lost is applied once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from router.budgets.leases import LeasedStore
from router.budgets.pipeline import ScriptUnavailable
from router.budgets.store import (
    NANO,
    Ask,
    Caps,
    RedisStore,
    Standing,
    StoreUnavailable,
    Windows,
)
from tests.support.redis_server import RedisServer


def scope(name: str) -> str:
    return f"team:{name}-{time.monotonic_ns()}"


async def in_redis(url: str, name: str, windows: Windows) -> Standing:
    """The scope's counters as Redis holds them (what every replica sees)."""
    store = RedisStore(url)
    try:
        return await store.standing(name, windows)
    finally:
        await store.aclose()


def counting(store: LeasedStore) -> list[str]:
    """The script calls `store` makes from now on."""
    calls: list[str] = []
    real: Callable[..., Any] = store._scripts.call

    def call(script: str, keys: list[str], args: list[Any]) -> Any:
        calls.append(script)
        return real(script, keys, args)

    store._scripts.call = call  # type: ignore[method-assign]
    return calls


async def test_requests_within_a_slice_make_no_call_to_redis(redis: RedisServer) -> None:
    now = time.time()  # one moment throughout: the rate window cannot roll mid-test
    store = LeasedStore(redis.url, flush_s=60, max_requests=64, clock=lambda: now)
    calls = counting(store)
    caps = Caps(nano_per_day=1000 * NANO, requests_per_minute=100_000)
    windows, name = Windows.at(now), scope("fast")
    try:
        for i in range(200):
            ask = Ask(name, f"r{i}", NANO // 1000, 100)
            assert (await store.reserve(ask, caps, windows, 60)).admitted
            await store.settle(ask, windows, NANO // 2000, 80)
        # a slice holds at most 64 requests: a call per 64 (plus the first's own claim)
        assert len(calls) <= 200 // 64 + 2
        await store.flush()  # a lease in use is renewed: a new slice, counted as taken
        renewed = await in_redis(redis.url, name, windows)
        assert renewed.spent_day_nano == 200 * NANO // 2000  # every settle sent, once
        assert renewed.requests == 200 + 64 and renewed.reserved_nano == 64 * NANO // 1000
        await store.flush(everything=True)  # as on closing: the slice goes back
        exact = await in_redis(redis.url, name, windows)
        assert (exact.requests, exact.tokens, exact.reserved_nano) == (200, 200 * 80, 0)
        assert exact.spent_day_nano == 200 * NANO // 2000
    finally:
        await store.aclose()


async def test_two_processes_never_pass_a_cap(redis: RedisServer) -> None:
    first, second = LeasedStore(redis.url), LeasedStore(redis.url)
    caps = Caps(nano_per_day=100 * NANO // 1000, requests_per_minute=100_000)
    windows, name = Windows.at(time.time()), scope("cap")
    asks = [Ask(name, f"r{i}", NANO // 1000, 10) for i in range(1000)]
    try:
        found = await asyncio.gather(
            *(
                (first if i % 2 else second).reserve(ask, caps, windows, 60)
                for i, ask in enumerate(asks)
            )
        )
        admitted = [ask for ask, standing in zip(asks, found, strict=True) if standing.admitted]
        assert len(admitted) == 100  # all asked at once: every slice is used up
        for i, ask in enumerate(asks):
            if ask in admitted:
                await (first if i % 2 else second).settle(ask, windows, NANO // 1000, 10)
        await first.flush()
        await second.flush()
        exact = await in_redis(redis.url, name, windows)
        assert exact.spent_day_nano == 100 * NANO // 1000
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_dead_process_gives_its_slice_back_within_the_ttl(redis: RedisServer) -> None:
    caps = Caps(nano_per_day=1000)
    windows, name = Windows.at(time.time()), scope("dead")
    dead = LeasedStore(redis.url, ttl_s=0.5, flush_s=60)
    held = Ask(name, "in-flight", 100, 1)
    assert (await dead.reserve(held, caps, windows, 60)).admitted
    assert dead._leases[name].money == 112  # (1000 - 100) / 8 of what is left, its slice
    # killed: it never flushes, never settles, never closes (its connections just go)
    await dead._client.aclose()
    alive = LeasedStore(redis.url, flush_s=60)
    try:
        early = await alive.reserve(Ask(name, "a", 800, 1), caps, windows, 60)
        assert not early.admitted  # 100 held and 112 leased by the dead one: 788 left
        await asyncio.sleep(0.6)
        later = await alive.reserve(Ask(name, "b", 1000, 1), caps, windows, 60)
        assert later.admitted  # the whole cap is free again: nothing charged for the dead
    finally:
        await alive.aclose()


async def test_a_flush_whose_reply_was_lost_is_applied_once(redis: RedisServer) -> None:
    store = LeasedStore(redis.url, flush_s=60)
    caps = Caps(nano_per_day=NANO)
    windows, name = Windows.at(time.time()), scope("lost")
    real = store._scripts.call
    try:
        ask = Ask(name, "a", 1000, 1)
        assert (await store.reserve(ask, caps, windows, 60)).admitted
        await store.settle(ask, windows, 700, 1)

        async def lost_reply(script: str, keys: list[str], args: list[Any]) -> Any:
            await real(script, keys, args)  # Redis ran it; the reply never came
            raise ScriptUnavailable("redis: connection reset")

        store._scripts.call = lost_reply  # type: ignore[assignment,method-assign]
        with pytest.raises(StoreUnavailable):
            await store.flush()
        # nothing is admitted from a lease whose last call is in doubt
        assert store._leases[name].money == 0
        store._scripts.call = real  # type: ignore[method-assign]
        await store.flush()  # the same flush again, under its marker
        exact = await in_redis(redis.url, name, windows)
        assert exact.spent_day_nano == 700  # once, not twice
    finally:
        await store.aclose()


async def test_an_outage_keeps_what_the_lease_settled_and_sends_it_once(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    store = LeasedStore(redis.url, flush_s=60, timeout_s=0.3)
    caps = Caps(nano_per_day=NANO)
    windows, name = Windows.at(time.time()), scope("outage")
    try:
        first = Ask(name, "a", 1000, 1)
        assert (await store.reserve(first, caps, windows, 60)).admitted
        redis.stop()
        second = Ask(name, "b", 1000, 1)
        assert (await store.reserve(second, caps, windows, 60)).admitted  # from the slice
        await store.settle(first, windows, 300, 1)
        await store.settle(second, windows, 400, 1)
        with pytest.raises(StoreUnavailable):
            await store.flush()
        redis.start()
        await store.flush()
        await store.flush()
        exact = await in_redis(redis.url, name, windows)
        assert exact.spent_day_nano == 700
    finally:
        await store.aclose()
        redis.stop()


async def test_slices_shrink_near_the_cap(redis: RedisServer) -> None:
    now = time.time()
    store = LeasedStore(redis.url, flush_s=60, clock=lambda: now)
    caps = Caps(requests_per_minute=20)
    windows, name = Windows.at(now), scope("near")
    calls = counting(store)
    try:
        found = [
            await store.reserve(Ask(name, f"r{i}", 0, 1), caps, windows, 60) for i in range(25)
        ]
        assert [s.admitted for s in found] == [True] * 20 + [False] * 5
        assert found[-1].refused_by == "requests"
        # slices of 2 requests ((20 - 1) / 8 of what is left), then 1, then none: near the
        # cap every request is a call, as without leases
        assert len(calls) == 18
    finally:
        await store.aclose()


async def test_spend_settled_but_not_yet_sent_is_in_the_standing(redis: RedisServer) -> None:
    """Asked after the rate window rolled (the lease is of the last one) and before the next
    flush: Redis does not have the spend yet, this process does."""
    now = time.time()
    store = LeasedStore(redis.url, flush_s=60, rate_window_s=2, clock=lambda: now)
    caps = Caps(nano_per_day=NANO, requests_per_minute=1000)
    windows, name = Windows.at(now, 2), scope("unsent")
    try:
        ask = Ask(name, "a", 1000, 1)
        assert (await store.reserve(ask, caps, windows, 60)).admitted
        await store.settle(ask, windows, 700, 1)
        later = Windows.at(now + 2, 2)  # the next rate window, the same day (most likely)
        standing = await store.standing(name, later)
        if later.day == windows.day:
            assert standing.spent_day_nano == 700
        redis_says = await in_redis(redis.url, name, later)
        assert redis_says.spent_day_nano == 0  # not sent yet
        # the lease's unused slice is reserved in Redis, but no request holds it
        assert redis_says.reserved_nano > 0 and standing.reserved_nano == 0
    finally:
        await store.aclose()


async def test_a_standing_asked_while_a_flush_is_out_counts_what_it_sends(
    redis: RedisServer,
) -> None:
    """A flush takes the settled spend out of the lease before its script call returns; a
    standing read in that moment waits for it (it once read $0: in neither place yet)."""
    now = time.time()
    store = LeasedStore(redis.url, flush_s=60, clock=lambda: now)
    caps = Caps(nano_per_day=NANO, requests_per_minute=1000)
    windows, name = Windows.at(now, 60), scope("in-flight")
    try:
        ask = Ask(name, "a", 1000, 1)
        assert (await store.reserve(ask, caps, windows, 60)).admitted
        await store.settle(ask, windows, 700, 1)
        real: Callable[..., Any] = store._scripts.call
        sent = asyncio.Event()

        async def slow(script: str, keys: list[str], args: list[Any]) -> Any:
            sent.set()
            await asyncio.sleep(0.2)  # the reply is on its way
            return await real(script, keys, args)

        store._scripts.call = slow  # type: ignore[method-assign]
        flushing = asyncio.create_task(store.flush())
        await sent.wait()
        later = Windows.at(now + 61, 60)  # a rolled rate window: the standing asks Redis
        standing = await store.standing(name, later)
        await flushing
        if later.day == windows.day:
            assert standing.spent_day_nano == 700
    finally:
        await store.aclose()
