"""Fair shares of the gateway: each team's share of the event loop for its requests'
CPU-heavy steps (parsing, validating, counting tokens) — a few at a time per team, and a team
that has used more than its share of the loop recently waits while another team is asking
too — and of each pass of the loop for all of its requests' steps (`stepped`), and each API
key's requests in progress (`KeyGates`).

One event loop serves every team, and a request's parsing is synchronous (milliseconds for a
megabyte of JSON). A semaphore per team bounds how many of a team's requests are parsed at
once, not how often: a team sending refused 1 MB bodies back to back could still keep the loop
busy, and every other team's request would wait behind one parse after another. So the time
each team's heavy steps take is charged to it (a token bucket refilled at `share` seconds of
loop per second, holding at most `burst_s`); a team in debt waits before its next turn while
any other team has asked within `recent_s`. Alone, a team runs at full speed and carries no
debt (the pacing is work-conserving). Teams are the policy's and `default`: a bounded set.

Pacing charges what a step took after it ran, and only parsing; the rest of a request - its
first steps, its upstream call, its answer written, each stream's chunks - runs on the same
loop in steps too, and a pass of the loop runs every step that is ready. When 240 of one
team's streams open at once, or a team keeps hundreds of requests in flight, another team's
request waits behind all of that team's ready steps at each of its own (~6 a request), and
its latency grows with the other team's load. So each request's handler runs `stepped`:
while another team is asking, a team's steps run in a pass of the loop only until they have
taken `pass_budget_s` of it; its next steps wait, in order, for the next passes (each pass
lets on as many as fit the budget at the team's recent step time, at least one). Another
team's request then waits behind about one budget of each other team per step, whatever
their load. Alone, a team's steps run at once. (A step held back this way runs later than
its data arrived: an upstream stream is read so that a break that came after its data
cannot drop that data - router/backends/openai_http.py `lines`.)"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Team:
    name: str
    gate: asyncio.Semaphore
    allowance_s: float
    refilled_at: float
    step_s: float  # its steps' recent mean (how many a pass lets on)
    asked_at: float = float("-inf")
    pass_used_s: float = 0.0  # what its steps took of this pass of the loop
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)  # steps, in order
    next_pass: asyncio.Handle | None = None  # while set, `pass_used_s` counts this pass's


@dataclass(slots=True)
class Turn:
    """A team's turn at intake: the heavy steps run inside `charged()`."""

    _gates: IntakeGates
    _team: _Team

    def contended(self) -> bool:
        """Whether another team has asked lately (its requests would wait behind this
        one's heavy steps on the loop)."""
        return self._gates._others_asking(self._team.name, self._gates.clock())

    @contextlib.contextmanager
    def charged(self) -> Iterator[None]:
        """Charge the wall time of what runs inside to the team (only CPU-bound steps go
        here: time spent waiting on the client's bytes is not the loop's)."""
        clock = self._gates.clock
        started = clock()
        try:
            yield
        finally:
            self._team.allowance_s -= clock() - started


@dataclass(slots=True)
class IntakeGates:
    """Per team: at most `per_team` requests in intake at once, at most `share` of the loop's
    time for parsing and `pass_budget_s` of each pass of it while other teams ask (see the
    module's docstring)."""

    per_team: int
    share: float = 0.5
    pass_budget_s: float = 0.0005
    burst_s: float = 0.05
    recent_s: float = 1.0
    clock: Callable[[], float] = time.perf_counter
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    on_paced: Callable[[str, float], None] = lambda team, seconds: None
    teams: dict[str, _Team] = field(default_factory=dict)

    def _of(self, name: str) -> _Team:
        team = self.teams.get(name)
        if team is None:
            team = self.teams[name] = _Team(
                name,
                asyncio.Semaphore(self.per_team),
                self.burst_s,
                self.clock(),
                self.pass_budget_s,  # until its steps are timed: one a pass
            )
        return team

    def _refill(self, team: _Team, now: float) -> None:
        team.allowance_s = min(
            self.burst_s, team.allowance_s + (now - team.refilled_at) * self.share
        )
        team.refilled_at = now

    def _others_asking(self, name: str, now: float) -> bool:
        return any(
            now - team.asked_at < self.recent_s
            for other, team in self.teams.items()
            if other != name
        )

    async def _paced(self, team: _Team) -> None:
        """Wait while the team is in debt and another team is asking."""
        waited = 0.0
        while True:
            now = self.clock()
            self._refill(team, now)
            if not self._others_asking(team.name, now):
                team.allowance_s = max(team.allowance_s, 0.0)  # alone: no debt carried
                break
            if team.allowance_s >= -1e-6:  # paid back (to a rounding error)
                break
            pause = max(-team.allowance_s / self.share, 0.001)
            await self.sleep(pause)
            waited += pause
        if waited:
            self.on_paced(team.name, waited)

    def _place(self, team: _Team) -> asyncio.Future[None] | None:
        """None: the team's next step may run in this pass; else the future set when it may
        (another team is asking, and the team has had its budget of this pass or others of
        its steps are waiting)."""
        if not team.waiting and team.pass_used_s < self.pass_budget_s:
            return None
        if not self._others_asking(team.name, self.clock()):
            return None
        place: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        team.waiting.append(place)
        self._track(team)
        return place

    def _spent(self, team: _Team, seconds: float) -> None:
        team.pass_used_s += seconds
        team.step_s += (seconds - team.step_s) / 16
        if team.pass_used_s >= self.pass_budget_s:  # spent: afresh next pass (until then,
            self._track(team)  # what it counts may span passes: it errs on the safe side)

    def _track(self, team: _Team) -> None:
        if team.next_pass is None:  # `_pass` runs in the next pass of the loop
            team.next_pass = asyncio.get_running_loop().call_soon(self._pass, team)

    def _pass(self, team: _Team) -> None:
        """A new pass of the loop: the team's budget afresh, and as many of its waiting
        steps let on as fit it at their recent mean (at least one; they run next pass), or
        all of them once no other team is asking."""
        team.pass_used_s = 0.0
        fit = max(1, int(self.pass_budget_s / max(team.step_s, 1e-6)))
        if not self._others_asking(team.name, self.clock()):
            fit = len(team.waiting)
        while team.waiting and fit:
            place = team.waiting.popleft()
            if not place.done():  # not cancelled meanwhile
                place.set_result(None)
                fit -= 1
        loop = asyncio.get_running_loop()
        team.next_pass = loop.call_soon(self._pass, team) if team.waiting else None

    async def stepped(self, name: str, work: Awaitable[T]) -> T:
        """`work` (a request's handler) run step by step as team `name`'s (see the module's
        docstring); an awaitable that is not a coroutine, as it is."""
        if not isinstance(work, Coroutine):
            return await work
        return await _Stepped(self, self._of(name), work)

    @contextlib.asynccontextmanager
    async def turn(self, name: str) -> AsyncIterator[Turn]:
        """The team's turn at intake: one of its `per_team` places, paced."""
        team = self._of(name)
        team.asked_at = self.clock()
        async with team.gate:
            await self._paced(team)
            yield Turn(self, team)


class _Stepped(Generic[T]):
    """A coroutine driven one step at a time, each step let on by the team's place in a pass
    of the loop (`IntakeGates._place`) and timed against it; what it awaits is handed to the
    task running it as it is, and what the task delivers (a cancellation, say) is handed
    back in the work's next step, in turn like any other (one delivered while a step waits
    for its place is handed back once, as a task delivers two cancellations as one)."""

    __slots__ = ("_gates", "_team", "_work")

    def __init__(self, gates: IntakeGates, team: _Team, work: Coroutine[Any, Any, T]) -> None:
        self._gates, self._team, self._work = gates, team, work

    def __await__(self) -> Generator[Any, Any, T]:
        gates, team, work = self._gates, self._team, self._work
        clock = gates.clock
        sent: Any = None
        error: BaseException | None = None
        while True:
            # what the task delivers (a timeout, the client gone) waits its turn as well: 240
            # streams that time out together are 240 steps in turn, not one pass of them all
            while (place := gates._place(team)) is not None:
                try:
                    yield from place
                    break
                except GeneratorExit:
                    work.close()
                    raise
                except BaseException as exc:  # noqa: BLE001 - the work's to handle (cancelled)
                    error = error or exc  # its place is gone (cancelled with it): a new one
            started = clock()
            try:
                awaited = work.send(sent) if error is None else work.throw(error)
            except StopIteration as done:
                result: T = done.value
                return result
            finally:
                gates._spent(team, clock() - started)
                # not held here while it goes up through this frame: a raised exception's
                # traceback holds the frame, and a frame holding it makes a reference cycle
                error = None
            sent = None
            try:
                sent = yield awaited
            except GeneratorExit:
                work.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - the work's to handle (cancelled)
                error = exc


@dataclass(slots=True)
class KeyGates:
    """Requests in progress at once per API key, for a key whose own `limits.max_in_flight`
    is set (in this process): its requests past the cap wait their turn, first come, first
    served, before anything of theirs is read or parsed. Keys are the keys file's and the
    policy's: a bounded set."""

    gates: dict[str, asyncio.Semaphore] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def held(self, key_id: str | None, cap: int | None) -> AsyncIterator[None]:
        if key_id is None or cap is None:
            yield
            return
        gate = self.gates.get(key_id)
        if gate is None:
            gate = self.gates[key_id] = asyncio.Semaphore(cap)
        async with gate:
            yield
