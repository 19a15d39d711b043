"""A team's share of the event loop for parsing (router/server/fairness.py): a team that has
used more than its share waits while another team asks, and never while it is alone."""

from __future__ import annotations

import asyncio

from router.server.fairness import IntakeGates


class Clock:
    """The gates' clock, moved by the test (each parse 'takes' what it is charged)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def _gates(clock: Clock, paced: list[tuple[str, float]]) -> IntakeGates:
    return IntakeGates(
        2,
        share=0.5,
        burst_s=0.002,
        clock=clock,
        sleep=clock.sleep,
        on_paced=lambda team, seconds: paced.append((team, seconds)),
    )


async def _parse(gates: IntakeGates, clock: Clock, team: str, seconds: float) -> None:
    async with gates.turn(team) as turn:
        with turn.charged():
            clock.now += seconds


def test_a_team_alone_is_never_paced() -> None:
    clock, paced = Clock(), []  # type: ignore[var-annotated]
    gates = _gates(clock, paced)

    async def flood() -> None:
        for _ in range(50):
            await _parse(gates, clock, "big", 0.01)  # 100% of the loop, 10x its share

    asyncio.run(flood())
    assert paced == []
    assert gates.teams["big"].allowance_s > -0.02  # alone, its debt is not carried


def test_a_team_past_its_share_waits_while_another_team_asks() -> None:
    clock, paced = Clock(), []  # type: ignore[var-annotated]
    gates = _gates(clock, paced)

    async def run() -> None:
        await _parse(gates, clock, "small", 0.0001)  # another team asks
        await _parse(gates, clock, "big", 0.01)  # 10 ms charged against a 2 ms burst
        # 8 ms in debt, 5 ms of it refilled while it parsed (10 ms at share 0.5): it waits
        # 6 ms, the 3 ms left at 0.5
        await _parse(gates, clock, "big", 0.0001)

    asyncio.run(run())
    assert [team for team, _ in paced] == ["big"]
    assert abs(paced[0][1] - 0.006) < 1e-6


def test_the_other_team_is_not_paced_and_asking_expires() -> None:
    clock, paced = Clock(), []  # type: ignore[var-annotated]
    gates = _gates(clock, paced)

    async def run() -> None:
        await _parse(gates, clock, "big", 0.01)
        await _parse(gates, clock, "small", 0.0001)  # never in debt: not paced
        clock.now += gates.recent_s + 0.01  # the small team has not asked for a while
        gates.teams["big"].allowance_s = -1.0  # deeply in debt
        await _parse(gates, clock, "big", 0.0001)  # alone again: not paced

    asyncio.run(run())
    assert paced == []


def test_waiting_refills_the_allowance_at_the_share_rate() -> None:
    clock, paced = Clock(), []  # type: ignore[var-annotated]
    gates = _gates(clock, paced)
    asyncio.run(_parse(gates, clock, "small", 0.0))
    asyncio.run(_parse(gates, clock, "big", 0.004))  # 2 ms in debt after a 4 ms parse
    clock.now += 0.002  # 6 ms since its last refill: 3 ms back at share 0.5
    gates._refill(gates.teams["big"], clock.now)
    assert abs(gates.teams["big"].allowance_s - 0.001) < 1e-9
    clock.now += 1.0
    gates._refill(gates.teams["big"], clock.now)
    assert gates.teams["big"].allowance_s == gates.burst_s  # capped at the burst


async def _burst(gates: IntakeGates, teams: list[str], cancel: int | None = None) -> list[str]:
    """Requests of `teams` that become ready in the same pass of the loop, in that order: the
    order in which they begin intake, with `|` where the first pass ended."""
    begun: list[str] = []

    async def begin(team: str) -> None:
        async with gates.turn(team):
            begun.append(team)

    tasks = [asyncio.create_task(begin(team)) for team in teams]
    asyncio.get_running_loop().call_soon(begun.append, "|")  # after every first step
    if cancel is not None:
        await asyncio.sleep(0)  # past the first pass: the rest are waiting
        tasks[cancel].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return begun


def test_a_burst_begins_a_few_at_a_time_while_another_team_asks() -> None:
    clock, paced = Clock(), []  # type: ignore[var-annotated]
    gates = _gates(clock, paced)  # 2 a pass

    async def run() -> list[str]:
        await _parse(gates, clock, "small", 0.0)  # the other team is asking
        return await _burst(gates, ["big"] * 6 + ["small"])

    # the small team's request, ready behind six of the big team's, begins in the first pass
    assert asyncio.run(run()) == ["big", "big", "small", "|", "big", "big", "big", "big"]
    assert paced == []


def test_a_burst_of_a_team_alone_begins_at_once() -> None:
    clock, paced = Clock(), []  # type: ignore[var-annotated]
    gates = _gates(clock, paced)
    assert asyncio.run(_burst(gates, ["big"] * 6)) == ["big"] * 6 + ["|"]


def test_a_request_that_leaves_while_it_waits_gives_its_place_on() -> None:
    clock, paced = Clock(), []  # type: ignore[var-annotated]
    gates = _gates(clock, paced)

    async def run() -> list[str]:
        await _parse(gates, clock, "small", 0.0)
        return await _burst(gates, ["big"] * 5, cancel=3)

    assert asyncio.run(run()) == ["big", "big", "|", "big", "big"]  # the 4th left
    assert not gates.teams["big"].waiting and gates.teams["big"].next_pass is None
