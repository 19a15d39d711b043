"""A tier's slots shared fairly among teams (router/backends/slots.py): a burst from one team
delays another team's call by at most one slot's turn, a team's cap holds, and cancelled or
refused waiters leave nothing behind."""

from __future__ import annotations

import asyncio

import pytest

from router.backends.slots import FairSlots, Saturated


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_burst_delays_another_team_by_one_turn_at_most() -> None:
    """Team a holds all 8 slots and queues 100 more calls; team b's one call, queued after
    them, takes one of the next two slots that free (a's turn, then b's), not the 101st."""
    slots = FairSlots(8, 1000)
    granted: list[str] = []

    async def call(team: str) -> None:
        await slots.acquire(team)
        granted.append(team)

    held = [asyncio.create_task(call("a")) for _ in range(8)]
    await _settle()
    burst = [asyncio.create_task(call("a")) for _ in range(100)]
    await _settle()
    other = asyncio.create_task(call("b"))
    await _settle()
    assert granted == ["a"] * 8 and slots.waiting == 101
    for _ in range(2):
        slots.release("a")
        await _settle()
    assert "b" in granted[8:10]
    while slots.waiting:
        slots.release("a")
        await _settle()
    await asyncio.gather(*held, *burst, other)
    assert granted.count("a") == 108


async def test_turns_alternate_between_waiting_teams() -> None:
    slots = FairSlots(1, 100)
    order: list[str] = []

    async def call(team: str) -> None:
        await slots.acquire(team)
        order.append(team)

    first = asyncio.create_task(call("x"))
    await _settle()
    waiting = [asyncio.create_task(call(t)) for t in ("a", "a", "a", "b", "b", "c")]
    await _settle()
    for team in ("x", "a", "b", "c", "a", "b"):
        slots.release(team)
        await _settle()
    await asyncio.gather(first, *waiting)
    assert order == ["x", "a", "b", "c", "a", "b", "a"]


async def test_a_team_at_its_cap_waits_while_others_take_free_slots() -> None:
    slots = FairSlots(4, 100)
    await slots.acquire("a", cap=2)
    await slots.acquire("a", cap=2)
    third = asyncio.create_task(slots.acquire("a", cap=2))
    await _settle()
    assert not third.done() and slots.waiting == 1
    await slots.acquire("b", cap=2)  # a free slot, and b is under its cap: at once
    assert slots.in_flight == {"a": 2, "b": 1}
    slots.release("a")
    await _settle()
    assert third.done() and slots.in_flight == {"a": 2, "b": 1}


async def test_a_full_queue_refuses_and_a_cancelled_waiter_leaves_no_trace() -> None:
    slots = FairSlots(1, 1)
    await slots.acquire("a")
    waiter = asyncio.create_task(slots.acquire("b"))
    await _settle()
    with pytest.raises(Saturated):
        await slots.acquire("c")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.waiting == 0
    slots.release("a")
    await slots.acquire("c")  # the slot went back, nobody waits for it
    assert slots.in_flight == {"c": 1}
