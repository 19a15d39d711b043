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
debt (the pacing is work-conserving). Teams are the policy's and `default`: a bounded set."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Team:
    gate: asyncio.Semaphore
    allowance_s: float
    refilled_at: float
    asked_at: float = float("-inf")


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

    @contextlib.asynccontextmanager
    async def turn(self, name: str) -> AsyncIterator[Turn]:
        """The team's turn at intake: paced, then one of its `per_team` places."""
        team = self._of(name)
        team.asked_at = self.clock()
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
