"""The daily spend cap of a route's shadow checks (`shadow.usd_per_day`, `shadow.cap_store`).

A paid check holds its maximum cost against its route's UTC day before it calls, and
settles to what it really cost after, so concurrent checks cannot pass the cap together.
Amounts are whole nano-dollars (no float drift across millions of checks).

- `memory`: this process's own day. Each worker and replica has its own, so N of them may
  spend up to N times the cap.
- `redis`: one day shared by every process on the same Redis (CASCADE_REDIS_URL): a Lua
  script checks and holds in one step; the key expires two days later. A Redis that cannot
  be reached holds nothing: the check is skipped (checks are optional, spend is not).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from router.redis_pool import background_client, redis_errors

if TYPE_CHECKING:
    import redis.asyncio

NANO = 1_000_000_000
_KEEP_S = 2 * 86_400
_HOLD = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
if spent + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


def nano(usd: float) -> int:
    return round(usd * NANO)


class DayCap(Protocol):
    async def hold(self, route: str, day: str, amount: int, cap: int) -> bool | None:
        """Add `amount` to the route's day unless that passes `cap` (False: not held;
        None: the store cannot be reached, nothing held)."""
        ...

    async def settle(self, route: str, day: str, delta: int) -> None:
        """Correct the day by `delta` (what a check cost minus what it held)."""
        ...


class MemoryCap:
    def __init__(self) -> None:
        self._spent: dict[tuple[str, str], int] = {}

    async def hold(self, route: str, day: str, amount: int, cap: int) -> bool | None:
        held = self._spent.get((route, day), 0)
        if held + amount > cap:
            return False
        self._spent[(route, day)] = held + amount
        return True

    async def settle(self, route: str, day: str, delta: int) -> None:
        self._spent[(route, day)] = self._spent.get((route, day), 0) + delta


class RedisCap:
    def __init__(self, url: str, on_error: Callable[[Exception], None]) -> None:
        self._client: redis.asyncio.Redis = background_client(url)
        self._hold = self._client.register_script(_HOLD)
        self._on_error = on_error
        self._errors = redis_errors()

    @staticmethod
    def key(route: str, day: str) -> str:
        return f"cascade:shadow:spent:{route}:{day}"

    async def hold(self, route: str, day: str, amount: int, cap: int) -> bool | None:
        try:
            held = await self._hold(keys=[self.key(route, day)], args=[amount, cap, _KEEP_S])
        except self._errors as exc:
            self._on_error(exc)
            return None
        return bool(held)

    async def settle(self, route: str, day: str, delta: int) -> None:
        if not delta:
            return
        try:
            await self._client.incrby(self.key(route, day), delta)
        except self._errors as exc:
            self._on_error(exc)

    async def aclose(self) -> None:
        await self._client.aclose()
