"""A team's share of the event loop (router/server/fairness.py): a team that has used more
than its share of parsing waits while another team asks, a busy team's steps take at most a
budget of each pass of the loop while another team asks, and neither ever while it is
alone; a request run step by step gets its results, errors and cancellations as it would."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

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


class Passes:
    """Counts the passes of the event loop (a callback that reschedules itself each pass)."""

    def __init__(self) -> None:
        self.count = 0
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.count += 1
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._handle.cancel()


async def _steps(
    gates: IntakeGates, clock: Clock, requests: list[tuple[str, float]], steps: int = 3
) -> list[tuple[str, int]]:
    """Requests (team, what each step takes) started in the same pass, each `steps` steps
    run through `gates.stepped`: (team, pass) of every step, in the order they ran."""
    passes = Passes()
    ran: list[tuple[str, int]] = []

    async def request(team: str, seconds: float) -> None:
        for _ in range(steps):
            ran.append((team, passes.count))
            clock.now += seconds
            await asyncio.sleep(0)  # the next step: another pass

    await asyncio.gather(*(gates.stepped(team, request(team, s)) for team, s in requests))
    passes.stop()
    return ran


def _per_pass(ran: list[tuple[str, int]], team: str) -> list[int]:
    counts: dict[int, int] = {}
    for who, at in ran:
        if who == team:
            counts[at] = counts.get(at, 0) + 1
    return sorted(counts.values())


def test_a_busy_team_s_steps_take_one_budget_of_a_pass_while_another_team_asks() -> None:
    clock, paced = Clock(), []  # type: ignore[var-annotated]
    gates = _gates(clock, paced)  # 0.5 ms a pass

    async def run() -> list[tuple[str, int]]:
        await _parse(gates, clock, "small", 0.0)  # the other team is asking
        # eight requests of 1 ms steps, and one of the small team's ready behind them
        return await _steps(gates, clock, [("big", 0.001)] * 8 + [("small", 0.0)])

    ran = asyncio.run(run())
    assert len(ran) == 27  # every step ran
    small = [at for who, at in ran if who == "small"]
    assert small == [small[0], small[0] + 1, small[0] + 2]  # a step each pass, never held
    assert small[0] <= 1  # its first step in the first passes, not after the big team's
    assert max(_per_pass(ran, "big")) == 1  # 1 ms steps: one a pass against 0.5 ms
    assert paced == []


def test_a_team_alone_runs_every_step_at_once() -> None:
    clock, paced = Clock(), []  # type: ignore[var-annotated]
    gates = _gates(clock, paced)
    ran = asyncio.run(_steps(gates, clock, [("big", 0.001)] * 8))
    assert len({at for _, at in ran}) == 3  # three steps each: three passes in all
    assert _per_pass(ran, "big") == [8, 8, 8]


def test_cheap_steps_of_a_waiting_team_are_let_on_as_many_as_fit_a_pass() -> None:
    clock, paced = Clock(), []  # type: ignore[var-annotated]
    gates = _gates(clock, paced)

    async def run() -> list[tuple[str, int]]:
        await _parse(gates, clock, "small", 0.0)
        return await _steps(gates, clock, [("big", 0.0001)] * 40, steps=8)

    ran = asyncio.run(run())
    assert len(ran) == 320
    # 0.1 ms steps against a 0.5 ms budget: up to ~5 a pass once timed, never all 40
    assert 3 <= max(_per_pass(ran, "big")) <= 7


def test_stepped_hands_back_results_errors_and_cancellation() -> None:
    clock, paced = Clock(), []  # type: ignore[var-annotated]
    gates = _gates(clock, paced)
    unwound: list[str] = []

    async def answer(value: int) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.001, future.set_result, value)
        return await future + 1

    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("refused")

    async def held() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            unwound.append("held")

    async def timed_out() -> str:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
        except TimeoutError:
            return "timed out"
        return "not"

    async def run() -> None:
        await _parse(gates, clock, "small", 0.0)  # contended: steps go through places
        assert await gates.stepped("big", answer(41)) == 42
        with pytest.raises(ValueError, match="refused"):
            await gates.stepped("big", fails())
        assert await gates.stepped("big", timed_out()) == "timed out"
        task = asyncio.create_task(gates.stepped("big", held()))
        await asyncio.sleep(0.001)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            unwound.append("cancelled")

    asyncio.run(run())
    assert unwound == ["held", "cancelled"]


@pytest.mark.parametrize("cancels", [1, 2], ids=["once", "twice"])
def test_a_request_cancelled_while_its_step_waits_gives_its_place_on(cancels: int) -> None:
    """Cancelled again while it waits for a new place (its first one went with the first
    cancellation), it is handed one cancellation, in its turn."""
    clock, paced = Clock(), []  # type: ignore[var-annotated]
    gates = _gates(clock, paced)
    unwound: list[str] = []

    async def request(name: str) -> None:
        try:
            for _ in range(3):
                clock.now += 0.001
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            unwound.append(name)
            raise

    async def run() -> list[BaseException | None]:
        await _parse(gates, clock, "small", 0.0)
        tasks = [asyncio.create_task(gates.stepped("big", request(str(i)))) for i in range(5)]
        for _ in range(6):  # each has run its first step, and waits for its next
            await asyncio.sleep(0)
        tasks[3].cancel()
        for _ in range(cancels - 1):
            await asyncio.sleep(0)  # its place is gone; it waits for a new one
            tasks[3].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(run())
    assert [type(r).__name__ for r in results] == ["NoneType"] * 3 + ["CancelledError", "NoneType"]
    assert unwound == ["3"]
    big = gates.teams["big"]
    assert not big.waiting and big.next_pass is None


def test_waiting_steps_are_all_let_on_once_no_other_team_asks() -> None:
    clock, paced = Clock(), []  # type: ignore[var-annotated]
    gates = _gates(clock, paced)

    async def run() -> list[tuple[str, int]]:
        await _parse(gates, clock, "small", 0.0)
        steps = asyncio.ensure_future(_steps(gates, clock, [("big", 0.001)] * 6, steps=1))
        await asyncio.sleep(0)  # the requests start,
        await asyncio.sleep(0)  # and in their first pass one step runs, five wait
        clock.now += gates.recent_s  # the other team's ask is no longer recent
        return await steps

    ran = asyncio.run(run())
    assert len(ran) == 6
    assert sorted(_per_pass(ran, "big")) == [1, 5]  # the five together, in the next pass


def test_cancellations_delivered_together_are_handled_in_turn() -> None:
    """Streams that time out together (or whose clients all leave at once) each handle it
    in a step of their own, one budget a pass, not all of them in one pass of the loop."""
    clock, paced = Clock(), []  # type: ignore[var-annotated]
    gates = _gates(clock, paced)  # 0.5 ms a pass
    handled: list[tuple[str, int]] = []

    async def stream(passes: Passes, name: str) -> str:
        try:
            await asyncio.sleep(10)  # an upstream that sends nothing
        except asyncio.CancelledError:
            handled.append((name, passes.count))
            clock.now += 0.001  # 1 ms to record it and tell the client
            raise
        return "not cancelled"

    async def run() -> list[BaseException | str]:
        passes = Passes()
        await _parse(gates, clock, "small", 0.0)  # another team is asking
        streams = [
            asyncio.create_task(gates.stepped("big", stream(passes, str(i)))) for i in range(8)
        ]
        for _ in range(5):  # all opened, each waiting for its upstream
            await asyncio.sleep(0)
        assert not gates.teams["big"].waiting
        for task in streams:
            task.cancel()
        results = await asyncio.gather(*streams, return_exceptions=True)
        passes.stop()
        return results

    results = asyncio.run(run())
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert sorted(name for name, _ in handled) == [str(i) for i in range(8)]  # each handled once
    at = [p for _, p in handled]
    assert len(set(at)) == 8  # 1 ms each against a 0.5 ms budget: one a pass, in turn
    assert at == sorted(at)


def test_a_cancellation_handed_back_is_freed_at_once() -> None:
    """No reference cycle through the step wrapper's frame (the collector would have to find
    it, with the event loop held: 240 streams cancelled together are ~15,000 objects)."""
    clock, paced = Clock(), []  # type: ignore[var-annotated]
    gates = _gates(clock, paced)
    freed: list[weakref.ref[BaseException]] = []

    async def held() -> None:
        await asyncio.sleep(10)

    async def run() -> None:
        await _parse(gates, clock, "small", 0.0)  # contended: steps go through places
        task = asyncio.create_task(gates.stepped("big", held()))
        await asyncio.sleep(0.001)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError as exc:
            freed.append(weakref.ref(exc))

    gc.disable()
    try:
        asyncio.run(run())
        assert len(freed) == 1 and freed[0]() is None
    finally:
        gc.enable()
