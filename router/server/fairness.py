"""Fair shares of the gateway: each team's share of the event loop for its requests'
CPU-heavy steps (parsing, validating, counting tokens) — a few at a time per team, and a team
that has used more than its share of the loop recently waits while another team is asking
too — and each API key's requests in progress (`KeyGates`).

One event loop serves every team, and a request's parsing is synchronous (milliseconds for a
megabyte of JSON). A semaphore per team bounds how many of a team's requests are parsed at
once, not how often: a team sending refused 1 MB bodies back to back could still keep the loop
busy, and every other team's request would wait behind one parse after another. So the time
each team's heavy steps take is charged to it (a token bucket refilled at `share` seconds of
loop per second, holding at most `burst_s`); a team in debt waits before its next turn while
any other team has asked within `recent_s`. Alone, a team runs at full speed and carries no
debt (the pacing is work-conserving). Teams are the policy's and `default`: a bounded set.

Pacing charges what a step took after it ran; a burst is the other half. When 240 of one
team's requests become ready in the same pass of the event loop (connections opened at once),
each runs its first steps - parse, route, admit, open its upstream call - before the loop
looks at anything else: 130 ms on a 2-core VM, and another team's request that arrived in
that pass waits for all of it. So while another team is asking, at most `per_team` of a team's
requests begin intake in one pass of the loop; the rest wait in order for the next passes,
and another team's request that is ready meanwhile runs between them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Team:
    gate: asyncio.Semaphore
    allowance_s: float
    refilled_at: float
    asked_at: float = float("-inf")
    passes: int = 0  # requests that may still begin intake in this pass of the loop
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)
    next_pass: asyncio.Handle | None = None  # while set, `passes` counts this pass's


@dataclass(slots=True)
class Turn:
    """A team's turn at intake: the heavy steps run inside `charged()`."""

    _gates: IntakeGates
    _team: _Team
    _name: str

    def contended(self) -> bool:
        """Whether another team has asked lately (its requests would wait behind this
        one's heavy steps on the loop)."""
        return self._gates._others_asking(self._name, self._gates.clock())

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
    """Per team: at most `per_team` requests in intake at once, and at most `share` of the
    loop's time while other teams ask (see the module's docstring)."""

    per_team: int
    share: float = 0.5
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
                asyncio.Semaphore(self.per_team), self.burst_s, self.clock()
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

    async def _paced(self, name: str, team: _Team) -> None:
        """Wait while the team is in debt and another team is asking."""
        waited = 0.0
        while True:
            now = self.clock()
            self._refill(team, now)
            if not self._others_asking(name, now):
                team.allowance_s = max(team.allowance_s, 0.0)  # alone: no debt carried
                break
            if team.allowance_s >= -1e-6:  # paid back (to a rounding error)
                break
            pause = max(-team.allowance_s / self.share, 0.001)
            await self.sleep(pause)
            waited += pause
        if waited:
            self.on_paced(name, waited)

    async def _begun(self, name: str, team: _Team, now: float) -> None:
        """Wait for one of the `per_team` places of a pass of the loop, in order, while
        another team is asking (see the module's docstring)."""
        loop = asyncio.get_running_loop()
        if team.next_pass is None:  # the first of this pass
            team.passes = self.per_team
            team.next_pass = loop.call_soon(self._pass, team)
        if not team.waiting and (team.passes > 0 or not self._others_asking(name, now)):
            team.passes -= 1
            return
        place = loop.create_future()
        team.waiting.append(place)
        try:
            await place
        except asyncio.CancelledError:
            if not place.done() or place.cancelled():
                with contextlib.suppress(ValueError):
                    team.waiting.remove(place)
            raise

    def _pass(self, team: _Team) -> None:
        """A new pass of the loop: its places go to the team's first waiting requests."""
        team.passes = self.per_team
        while team.waiting and team.passes > 0:
            place = team.waiting.popleft()
            if not place.done():  # not cancelled meanwhile
                place.set_result(None)
                team.passes -= 1
        loop = asyncio.get_running_loop()
        team.next_pass = loop.call_soon(self._pass, team) if team.waiting else None

    @contextlib.asynccontextmanager
    async def turn(self, name: str) -> AsyncIterator[Turn]:
        """The team's turn at intake: its place in a pass of the loop, paced, then one of its
        `per_team` places."""
        team = self._of(name)
        team.asked_at = now = self.clock()
        await self._begun(name, team, now)
        async with team.gate:
            await self._paced(name, team)
            yield Turn(self, team, name)


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
