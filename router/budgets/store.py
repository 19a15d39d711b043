"""Spend and rate counters: reserve before a request runs, settle to what it cost after.

One `reserve` checks every limit of a scope (a team) and takes the request's share in one
atomic step — a Lua script in Redis, shared by every worker and replica, or plain code in
this process (`MemoryStore`, atomic because the event loop runs one coroutine at a time).
A reservation holds the request's maximum possible cost until `settle` replaces it with the
actual cost; one a crashed process never settled expires (`reservation_ttl_s`). Money is
counted in integer nano-USD so that sums are exact.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from router.budgets.pipeline import Pipeliner, ScriptUnavailable
from router.redis_pool import bounded_client

NANO = 1_000_000_000  # nano-USD per USD
Refusal = Literal["requests", "tokens", "usd_per_day", "usd_per_month"]
NO_LIMIT = -1
REFUSALS: tuple[Refusal, ...] = ("requests", "tokens", "usd_per_day", "usd_per_month")


class StoreUnavailable(Exception):
    """The shared store cannot be reached."""


# Windows, Ask and Standing are values, never changed once made; they are not frozen because
# a frozen dataclass sets each field through object.__setattr__, which costs a few
# microseconds on every request (bench (j)).


@dataclass(slots=True)
class Windows:
    """The UTC windows a moment falls in, and the seconds until each rolls over."""

    day: str
    month: str
    minute: int
    day_reset_s: float
    month_reset_s: float
    minute_reset_s: float

    @classmethod
    def at(cls, epoch: float, rate_window_s: int = 60) -> Windows:
        day, month, day_end, month_end = _calendar(int(epoch // 86_400))
        return cls(  # (positional: this runs on every request)
            day,
            month,
            int(epoch // rate_window_s),
            day_end - epoch,
            month_end - epoch,
            rate_window_s - epoch % rate_window_s,
        )


@functools.lru_cache(maxsize=4)
def _calendar(day_index: int) -> tuple[str, str, float, float]:
    """A UTC day's name, its month's, and when each ends (epoch seconds): worked out once a
    day, not on every request."""
    start = dt.datetime.fromtimestamp(day_index * 86_400, dt.UTC)
    first = start.replace(day=1)
    next_month = (first + dt.timedelta(days=32)).replace(day=1)
    return (
        start.strftime("%Y-%m-%d"),
        start.strftime("%Y-%m"),
        (day_index + 1) * 86_400.0,
        next_month.timestamp(),
    )


@dataclass(frozen=True, slots=True)
class Caps:
    """A scope's limits in store units (NO_LIMIT where there is none)."""

    nano_per_day: int = NO_LIMIT
    nano_per_month: int = NO_LIMIT
    requests_per_minute: int = NO_LIMIT
    tokens_per_minute: int = NO_LIMIT


@dataclass(slots=True)
class Ask:
    """One request's claim on a scope: its maximum cost and tokens."""

    scope: str
    request_id: str
    cost_nano: int
    tokens: int

    @property
    def member(self) -> str:
        return f"{self.request_id}|{self.cost_nano}"


@dataclass(slots=True)
class Standing:
    """A scope's counters as a reserve found them (after its own claim when admitted)."""

    admitted: bool
    refused_by: Refusal | None
    spent_day_nano: int
    spent_month_nano: int
    reserved_nano: int
    requests: int
    tokens: int


class Store(Protocol):
    async def reserve(self, ask: Ask, caps: Caps, windows: Windows, ttl_s: float) -> Standing: ...

    async def settle(self, ask: Ask, windows: Windows, cost_nano: int, tokens: int) -> None:
        """Release the reservation; count the actual cost and tokens."""
        ...

    async def standing(self, scope: str, windows: Windows) -> Standing:
        """The scope's counters now (nothing reserved)."""
        ...

    async def aclose(self) -> None: ...


def _refusal(caps: Caps, ask: Ask, counters: tuple[int, int, int, int, int]) -> Refusal | None:
    """The first limit this claim would break (rates first: they reset soonest)."""
    day, month, reserved, requests, tokens = counters
    if caps.requests_per_minute != NO_LIMIT and requests + 1 > caps.requests_per_minute:
        return "requests"
    if caps.tokens_per_minute != NO_LIMIT and tokens + ask.tokens > caps.tokens_per_minute:
        return "tokens"
    if caps.nano_per_day != NO_LIMIT and day + reserved + ask.cost_nano > caps.nano_per_day:
        return "usd_per_day"
    if caps.nano_per_month != NO_LIMIT and month + reserved + ask.cost_nano > caps.nano_per_month:
        return "usd_per_month"
    return None


@dataclass(slots=True)
class _Scope:
    """One scope's counters in this process."""

    day: dict[str, int] = field(default_factory=dict)
    month: dict[str, int] = field(default_factory=dict)
    requests: dict[int, int] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)
    reservations: dict[str, tuple[int, float]] = field(default_factory=dict)  # cost, expiry
    reserved: int = 0

    def expire(self, windows: Windows, now: float) -> None:
        if self.reservations:
            for member, (cost, expiry) in list(self.reservations.items()):
                if expiry <= now:
                    del self.reservations[member]
                    self.reserved -= cost
        # each holds the current window's counter at most: rebuilt only when one has passed
        if self.day.keys() - {windows.day}:
            self.day = {k: v for k, v in self.day.items() if k == windows.day}
        if self.month.keys() - {windows.month}:
            self.month = {k: v for k, v in self.month.items() if k == windows.month}
        if self.requests.keys() - {windows.minute}:
            self.requests = {k: v for k, v in self.requests.items() if k == windows.minute}
        if self.tokens.keys() - {windows.minute}:
            self.tokens = {k: v for k, v in self.tokens.items() if k == windows.minute}


class MemoryStore:
    """Counters of this process only (no Redis, or Redis down and `fail_open`)."""

    def __init__(self, clock: Any = time.time) -> None:
        self._scopes: dict[str, _Scope] = {}
        self._clock = clock

    def _scope(self, name: str, windows: Windows) -> _Scope:
        scope = self._scopes.setdefault(name, _Scope())
        scope.expire(windows, self._clock())
        return scope

    async def reserve(self, ask: Ask, caps: Caps, windows: Windows, ttl_s: float) -> Standing:
        scope = self._scope(ask.scope, windows)
        counters = (
            scope.day.get(windows.day, 0),
            scope.month.get(windows.month, 0),
            scope.reserved,
            scope.requests.get(windows.minute, 0),
            scope.tokens.get(windows.minute, 0),
        )
        refused = _refusal(caps, ask, counters)
        if refused is not None:
            return Standing(False, refused, *counters)
        scope.requests[windows.minute] = counters[3] + 1
        scope.tokens[windows.minute] = counters[4] + ask.tokens
        if ask.cost_nano > 0:
            scope.reservations[ask.member] = (ask.cost_nano, self._clock() + ttl_s)
            scope.reserved += ask.cost_nano
        return Standing(
            True,
            None,
            counters[0],
            counters[1],
            scope.reserved,
            counters[3] + 1,
            counters[4] + ask.tokens,
        )

    async def settle(self, ask: Ask, windows: Windows, cost_nano: int, tokens: int) -> None:
        scope = self._scope(ask.scope, windows)
        held = scope.reservations.pop(ask.member, None)
        if held is not None:
            scope.reserved -= held[0]
        scope.day[windows.day] = scope.day.get(windows.day, 0) + cost_nano
        scope.month[windows.month] = scope.month.get(windows.month, 0) + cost_nano
        if windows.minute in scope.tokens:
            scope.tokens[windows.minute] += tokens - ask.tokens

    async def standing(self, scope: str, windows: Windows) -> Standing:
        found = self._scope(scope, windows)
        return Standing(
            True,
            None,
            found.day.get(windows.day, 0),
            found.month.get(windows.month, 0),
            found.reserved,
            found.requests.get(windows.minute, 0),
            found.tokens.get(windows.minute, 0),
        )

    async def aclose(self) -> None:
        self._scopes.clear()


# KEYS: day, month, reserved, reservations (zset), requests (minute), tokens (minute)
# ARGV: now, expiry, cost, tokens, member, cap_day, cap_month, rpm, tpm, rate key ttl
_RESERVE = """
local now = tonumber(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
for _, member in ipairs(expired) do
  local cost = tonumber(string.match(member, '|(%d+)$'))
  if cost then redis.call('DECRBY', KEYS[3], cost) end
end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now) end
local day = tonumber(redis.call('GET', KEYS[1]) or '0')
local month = tonumber(redis.call('GET', KEYS[2]) or '0')
local reserved = tonumber(redis.call('GET', KEYS[3]) or '0')
local requests = tonumber(redis.call('GET', KEYS[5]) or '0')
local tokens = tonumber(redis.call('GET', KEYS[6]) or '0')
local cost, want = tonumber(ARGV[3]), tonumber(ARGV[4])
local cap_day, cap_month = tonumber(ARGV[6]), tonumber(ARGV[7])
local rpm, tpm = tonumber(ARGV[8]), tonumber(ARGV[9])
local refused = ''
if rpm >= 0 and requests + 1 > rpm then refused = 'requests'
elseif tpm >= 0 and tokens + want > tpm then refused = 'tokens'
elseif cap_day >= 0 and day + reserved + cost > cap_day then refused = 'usd_per_day'
elseif cap_month >= 0 and month + reserved + cost > cap_month then refused = 'usd_per_month'
end
if refused ~= '' then return {0, refused, day, month, reserved, requests, tokens} end
redis.call('INCR', KEYS[5]); redis.call('EXPIRE', KEYS[5], ARGV[10])
redis.call('INCRBY', KEYS[6], want); redis.call('EXPIRE', KEYS[6], ARGV[10])
if cost > 0 then
  redis.call('INCRBY', KEYS[3], cost)
  redis.call('ZADD', KEYS[4], tonumber(ARGV[2]), ARGV[5])
end
return {1, '', day, month, reserved + cost, requests + 1, tokens + want}
"""

# KEYS: day, month, reserved, reservations, tokens (minute)
# ARGV: member, reserved cost, actual cost, token correction, day ttl, month ttl
_SETTLE = """
if redis.call('ZREM', KEYS[4], ARGV[1]) == 1 then redis.call('DECRBY', KEYS[3], ARGV[2]) end
local cost = tonumber(ARGV[3])
if cost > 0 then
  redis.call('INCRBY', KEYS[1], cost); redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('INCRBY', KEYS[2], cost); redis.call('EXPIRE', KEYS[2], ARGV[6])
end
if tonumber(ARGV[4]) ~= 0 and redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('INCRBY', KEYS[5], ARGV[4])
end
return 1
"""

_DAY_MARGIN_S, _MONTH_MARGIN_S = 86_400, 2 * 86_400


@dataclass(frozen=True, slots=True)
class ScopeKeys:
    """Where a scope's counters live in Redis (every store that keeps them there)."""

    base: str  # `prefix:{scope}`: one hash slot per scope (Redis Cluster)

    @classmethod
    def of(cls, prefix: str, scope: str) -> ScopeKeys:
        return cls(f"{prefix}:{{{scope}}}")

    def day(self, day: str) -> str:
        return f"{self.base}:usd:d:{day}"

    def month(self, month: str) -> str:
        return f"{self.base}:usd:m:{month}"

    @property
    def reserved(self) -> str:
        return f"{self.base}:reserved"

    @property
    def reservations(self) -> str:
        return f"{self.base}:reservations"

    def requests(self, minute: int) -> str:
        return f"{self.base}:req:{minute}"

    def tokens(self, minute: int) -> str:
        return f"{self.base}:tok:{minute}"

    async def standing(self, client: Any, windows: Windows) -> Standing:
        """The counters now, in one MGET (nothing reserved)."""
        import redis

        keys = [
            self.day(windows.day),
            self.month(windows.month),
            self.reserved,
            self.requests(windows.minute),
            self.tokens(windows.minute),
        ]
        try:
            values = await client.mget(keys)
        except (redis.RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        day, month, reserved, requests, tokens = (int(v or 0) for v in values)
        return Standing(True, None, day, month, reserved, requests, tokens)


class RedisStore:
    """Counters in Redis, shared by every worker and replica (one Lua script per step)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 1.0,
        max_connections: int = 64,
        pool_wait_s: float = 5.0,
        prefix: str = "cascade:lim",
    ) -> None:
        # a wait for a connection longer than `pool_wait_s` counts as unreachable
        self._client = bounded_client(
            url, timeout_s=timeout_s, pool_wait_s=pool_wait_s, max_connections=max_connections
        )
        self._prefix = prefix
        self._scripts = Pipeliner(self._client, {"reserve": _RESERVE, "settle": _SETTLE})

    def _keys(self, scope: str, windows: Windows) -> list[str]:
        keys = ScopeKeys.of(self._prefix, scope)
        return [
            keys.day(windows.day),
            keys.month(windows.month),
            keys.reserved,
            keys.reservations,
            keys.requests(windows.minute),
            keys.tokens(windows.minute),
        ]

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._scripts.call(script, keys, args)
        except ScriptUnavailable as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def reserve(self, ask: Ask, caps: Caps, windows: Windows, ttl_s: float) -> Standing:
        now = time.time()
        found = await self._run(
            "reserve",
            self._keys(ask.scope, windows),
            [
                now,
                now + ttl_s,
                ask.cost_nano,
                ask.tokens,
                ask.member,
                caps.nano_per_day,
                caps.nano_per_month,
                caps.requests_per_minute,
                caps.tokens_per_minute,
                2 * math.ceil(windows.minute_reset_s) + 1,  # the rate counters outlive it
            ],
        )
        refused = found[1].decode() if isinstance(found[1], bytes) else str(found[1])
        day, month, reserved, requests, tokens = (int(value) for value in found[2:7])
        reason = next((r for r in REFUSALS if r == refused), None)
        return Standing(bool(found[0]), reason, day, month, reserved, requests, tokens)

    async def settle(self, ask: Ask, windows: Windows, cost_nano: int, tokens: int) -> None:
        keys = self._keys(ask.scope, windows)
        await self._run(
            "settle",
            [*keys[:4], keys[5]],
            [
                ask.member,
                ask.cost_nano,
                cost_nano,
                tokens - ask.tokens,
                int(windows.day_reset_s) + _DAY_MARGIN_S,
                int(windows.month_reset_s) + _MONTH_MARGIN_S,
            ],
        )

    async def standing(self, scope: str, windows: Windows) -> Standing:
        return await ScopeKeys.of(self._prefix, scope).standing(self._client, windows)

    async def aclose(self) -> None:
        await self._scripts.drain()
        await self._client.aclose()


class FailOpen:
    """Redis, and this process's counters while Redis cannot be reached. What was admitted
    locally is settled locally: nothing is charged to Redis twice when it comes back."""

    def __init__(self, shared: Store, local: MemoryStore, on_error: Any) -> None:
        self._shared = shared
        self._local = local
        self._on_error = on_error  # called with the exception (logged, counted)
        self._local_claims: set[str] = set()

    async def reserve(self, ask: Ask, caps: Caps, windows: Windows, ttl_s: float) -> Standing:
        try:
            return await self._shared.reserve(ask, caps, windows, ttl_s)
        except StoreUnavailable as exc:
            self._on_error(exc)
            standing = await self._local.reserve(ask, caps, windows, ttl_s)
            if standing.admitted:
                self._local_claims.add(ask.member)
            return standing

    async def settle(self, ask: Ask, windows: Windows, cost_nano: int, tokens: int) -> None:
        if ask.member in self._local_claims:
            self._local_claims.discard(ask.member)
            await self._local.settle(ask, windows, cost_nano, tokens)
            return
        await self._shared.settle(ask, windows, cost_nano, tokens)

    async def standing(self, scope: str, windows: Windows) -> Standing:
        try:
            return await self._shared.standing(scope, windows)
        except StoreUnavailable:
            return await self._local.standing(scope, windows)

    async def aclose(self) -> None:
        await self._shared.aclose()
