"""A tier's concurrency slots, shared fairly among teams.

While a tier has free slots every call takes one at once. When it is saturated, calls wait
in one queue per team, and each slot that frees goes to the next team in turn (round-robin
over the teams with calls waiting; first come, first served within a team): a team that
sends 200 requests at once delays another team's request by at most one slot's turn, not by
its whole burst. A team may also be held to `max_in_flight` calls on the tier at once (its
`limits.max_in_flight`); its calls past that wait even when slots are free. Calls that find
`max_queue` already waiting are shed (the caller says which team was refused).
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from dataclasses import dataclass, field


class Saturated(Exception):
    """The tier's queue is full."""


@dataclass(slots=True)
class _Waiter:
    future: asyncio.Future[None]
    cap: int | None


@dataclass(slots=True)
class FairSlots:
    slots: int
    max_queue: int
    in_flight: Counter[str] = field(default_factory=Counter)
    _free: int = field(init=False)
    _queues: dict[str, deque[_Waiter]] = field(default_factory=dict)
    _turns: deque[str] = field(default_factory=deque)  # teams with calls waiting, in turn
    _waiting: int = 0

    def __post_init__(self) -> None:
        self._free = self.slots

    @property
    def waiting(self) -> int:
        return self._waiting

    def _may_run(self, team: str, cap: int | None) -> bool:
        return cap is None or self.in_flight[team] < cap

    async def acquire(self, team: str, cap: int | None = None) -> None:
        """A slot for one of `team`'s calls (Saturated when the queue is full)."""
        if self._free > 0 and not self._waiting and self._may_run(team, cap):
            self._free -= 1
            self.in_flight[team] += 1
            return
        if self._waiting >= self.max_queue:
            raise Saturated
        waiter = _Waiter(asyncio.get_running_loop().create_future(), cap)
        queue = self._queues.get(team)
        if queue is None:
            queue = self._queues[team] = deque()
            self._turns.append(team)
        queue.append(waiter)
        self._waiting += 1
        self._dispatch()
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(team)  # granted as it was cancelled: give the slot back
            else:
                self._forget(team, waiter)
            raise

    def release(self, team: str) -> None:
        self.in_flight[team] -= 1
        if self.in_flight[team] <= 0:
            del self.in_flight[team]
        self._free += 1
        self._dispatch()

    def _forget(self, team: str, waiter: _Waiter) -> None:
        queue = self._queues.get(team)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            self._waiting -= 1
            if not queue:
                del self._queues[team]
                self._turns.remove(team)

    def _dispatch(self) -> None:
        """Free slots to the waiting teams in turn (skipping a team at its cap)."""
        passed = 0
        while self._free > 0 and self._turns and passed < len(self._turns):
            team = self._turns[0]
            self._turns.rotate(-1)
            queue = self._queues[team]
            if not self._may_run(team, queue[0].cap):
                passed += 1
                continue
            passed = 0
            waiter = queue.popleft()
            self._waiting -= 1
            if not queue:
                del self._queues[team]
                self._turns.remove(team)
            self._free -= 1
            self.in_flight[team] += 1
            waiter.future.set_result(None)
