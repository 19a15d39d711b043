"""Leases: each process takes a slice of a scope's budget and rate window from Redis in one
script call, admits requests from it locally, and settles them in batches.

Without leases every request costs two script calls (reserve, settle) on the request path.
With them, a process's first request on a scope (a team, or a key with limits of its own)
asks Redis for the request's own claim plus a slice: some of what is left of the day's and
month's budgets, of this minute's requests and of its tokens. The slice is reserved in Redis
as one reservation of this process (`lease:<process>…|<nano-USD>`), and the rate counters
count it as used, so every cap stays exact: whatever all processes admit together never
passes a cap, because each admitted only from what Redis gave it. Requests that fit the slice
are admitted with no call to Redis; their costs and token counts are settled into the lease
and sent every `flush_s` (or sooner, when a request does not fit), together with what the
slice still holds, which goes back.

Slices shrink as a cap nears (each is `fraction` of what is left, at most `max_requests`
requests or that many times the asking request's cost and tokens), so near a cap requests go
to Redis one by one, as without leases. Admission near a cap can be a little conservative: a
request may be refused while another process holds an unused slice (until that process flushes
it back, within `flush_s`).

A process that dies leaves its lease reservation behind; it expires `ttl_s` after its last
renewal (renewed every flush while it holds anything), and its rate slice ends with the
minute. Each flush carries an id that Redis remembers, so a flush whose reply was lost (Redis
went away mid-call) is sent again and applied once: what a lease admitted while Redis was
away is settled exactly once when it comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from router.budgets.pipeline import Pipeliner, ScriptUnavailable
from router.budgets.store import (
    REFUSALS,
    Ask,
    Caps,
    ScopeKeys,
    Standing,
    StoreUnavailable,
    Windows,
)
from router.redis_pool import bounded_client

# KEYS: reserved, reservations (zset), requests (minute), tokens (minute), day, month,
#       then per flush entry: its marker, its day, its month
# ARGV: now, lease expiry, old lease member, n entries, [spent, requests, tokens] per entry,
#       then (at b): has ask, ask cost, ask tokens, held, cap day, cap month, rpm, tpm,
#       want money, want requests, want tokens, fraction, member prefix, rate ttl, day ttl,
#       month ttl, marker ttl
_LEASE = """
local now = tonumber(ARGV[1])
local function release(member)
  local cost = tonumber(string.match(member, '|(%d+)$'))
  if cost then redis.call('DECRBY', KEYS[1], cost) end
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, member in ipairs(expired) do release(member) end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
if ARGV[3] ~= '' and redis.call('ZREM', KEYS[2], ARGV[3]) == 1 then release(ARGV[3]) end
local n = tonumber(ARGV[4])
local b = 5 + 3 * n
local rate_ttl, day_ttl, month_ttl = ARGV[b + 13], ARGV[b + 14], ARGV[b + 15]
for i = 1, n do
  local a, k = 5 + 3 * (i - 1), 7 + 3 * (i - 1)
  if redis.call('SET', KEYS[k], '1', 'NX', 'EX', ARGV[b + 16]) then
    local spent, requests, tokens = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    if spent ~= 0 then
      redis.call('INCRBY', KEYS[k + 1], spent); redis.call('EXPIRE', KEYS[k + 1], day_ttl)
      redis.call('INCRBY', KEYS[k + 2], spent); redis.call('EXPIRE', KEYS[k + 2], month_ttl)
    end
    if requests > 0 or (requests < 0 and redis.call('EXISTS', KEYS[3]) == 1) then
      redis.call('INCRBY', KEYS[3], requests); redis.call('EXPIRE', KEYS[3], rate_ttl)
    end
    if tokens > 0 or (tokens < 0 and redis.call('EXISTS', KEYS[4]) == 1) then
      redis.call('INCRBY', KEYS[4], tokens); redis.call('EXPIRE', KEYS[4], rate_ttl)
    end
  end
end
local day = tonumber(redis.call('GET', KEYS[5]) or '0')
local month = tonumber(redis.call('GET', KEYS[6]) or '0')
local reserved = tonumber(redis.call('GET', KEYS[1]) or '0')
local requests = tonumber(redis.call('GET', KEYS[3]) or '0')
local tokens = tonumber(redis.call('GET', KEYS[4]) or '0')
local asked = tonumber(ARGV[b])
local cost, want = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
local held = tonumber(ARGV[b + 3])
local cap_day, cap_month = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
local rpm, tpm = tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7])
local refused = ''
if asked == 1 then
  if rpm >= 0 and requests + 1 > rpm then refused = 'requests'
  elseif tpm >= 0 and tokens + want > tpm then refused = 'tokens'
  elseif cap_day >= 0 and day + reserved + held + cost > cap_day then refused = 'usd_per_day'
  elseif cap_month >= 0 and month + reserved + held + cost > cap_month then
    refused = 'usd_per_month'
  end
end
local admitted = 0
if asked == 1 and refused == '' then admitted = 1 else cost = 0; want = 0 end
local fraction = tonumber(ARGV[b + 11])
local granting = admitted == 1 or asked == 0  -- a refused request takes no slice
local function slice(cap, used, wanted)  -- -1: no cap
  if cap < 0 then return -1 end
  if not granting then return 0 end
  return math.max(0, math.min(wanted, math.floor((cap - used) * fraction)))
end
local want_money = tonumber(ARGV[b + 8])
local money = slice(cap_day, day + reserved + held + cost, want_money)
local by_month = slice(cap_month, month + reserved + held + cost, want_money)
if money < 0 or (by_month >= 0 and by_month < money) then money = by_month end
local req_free = slice(rpm, requests + admitted, tonumber(ARGV[b + 9]))
local tok_free = slice(tpm, tokens + want, tonumber(ARGV[b + 10]))
local take_requests = admitted + math.max(req_free, 0)
if take_requests > 0 then
  redis.call('INCRBY', KEYS[3], take_requests); redis.call('EXPIRE', KEYS[3], rate_ttl)
end
local take_tokens = want + math.max(tok_free, 0)
if take_tokens > 0 then
  redis.call('INCRBY', KEYS[4], take_tokens); redis.call('EXPIRE', KEYS[4], rate_ttl)
end
local total = held + cost + math.max(money, 0)
local member = ''
if total > 0 then
  member = ARGV[b + 12] .. '|' .. total
  redis.call('INCRBY', KEYS[1], total)
  redis.call('ZADD', KEYS[2], tonumber(ARGV[2]), member)
end
return {admitted, refused, day, month, reserved + total, requests + take_requests,
        tokens + take_tokens, money, req_free, tok_free, member}
"""

_DAY_MARGIN_S, _MONTH_MARGIN_S = 86_400, 2 * 86_400


@dataclass(slots=True)
class _Flush:
    """What one flush sends: spend per day and month, and the rate counters' correction
    (this lease's unused slice back, requests and tokens it counted locally). Kept until
    Redis confirms it; sent again under the same marker if the reply was lost."""

    marker: str
    day: str
    month: str
    minute: int
    spent: int = 0
    requests: int = 0
    tokens: int = 0


@dataclass(slots=True)
class _Lease:
    """One scope's lease in this process."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    member: str = ""  # its reservation in Redis
    reserved: int = 0  # what that reservation holds (nano-USD)
    windows: Windows | None = None  # those of the grant
    caps: Caps | None = None
    granted_at: float = -math.inf
    held: dict[str, int] = field(default_factory=dict)  # requests in flight: their claim
    held_nano: int = 0  # the sum of `held`
    money: int | None = None  # nano-USD free to admit from (None: no money cap)
    requests: int | None = None  # requests free this minute (None: no request cap)
    tokens: int | None = None  # tokens free this minute (None: no token cap)
    spent: dict[tuple[str, str], int] = field(default_factory=dict)  # settled, not flushed
    unsent_nano: int = 0  # the sum of `spent`
    count_requests: int = 0  # admitted locally, not yet counted in Redis (no request cap)
    count_tokens: int = 0  # tokens used past what Redis counted (corrections, no token cap)
    unsure: list[_Flush] = field(default_factory=list)  # sent, reply lost
    snapshot: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)  # Redis's counters at grant
    used: bool = False  # admitted anything since the last flush
    typical: tuple[int, int] = (0, 0)  # the last claim's cost and tokens: what a slice is for

    def idle(self) -> bool:
        return not self.held and not self.spent and not self.unsure and not self.used


class LeasedStore:
    """Counters in Redis, admitted from per-process leases (see the module's docstring);
    the same `Store` protocol as `RedisStore`."""

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float = 15.0,
        flush_s: float = 0.5,
        fraction: float = 0.125,
        max_requests: int = 256,
        timeout_s: float = 1.0,
        max_connections: int = 64,
        pool_wait_s: float = 5.0,
        prefix: str = "cascade:lim",
        rate_window_s: int = 60,
        clock: Any = time.time,
    ) -> None:
        self._client = bounded_client(
            url, timeout_s=timeout_s, pool_wait_s=pool_wait_s, max_connections=max_connections
        )
        self._scripts = Pipeliner(self._client, {"lease": _LEASE})
        self._prefix = prefix
        self._process = uuid.uuid4().hex[:16]
        self._ttl_s, self._flush_s = ttl_s, flush_s
        self._fraction, self._max_requests = fraction, max_requests
        self._clock = clock
        self._rate_window_s = rate_window_s
        self._leases: dict[str, _Lease] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._serial = 0

    # -- the Store protocol ------------------------------------------------------------------

    async def reserve(self, ask: Ask, caps: Caps, windows: Windows, ttl_s: float) -> Standing:
        if self._flusher is None:
            self._start_flusher()
        lease = self._leases.get(ask.scope) or self._lease(ask.scope)
        if self._take(lease, ask, caps, windows):
            return self._local_standing(lease)
        async with lease.lock:  # one renewal at a time; the others then fit the new slice
            if self._take(lease, ask, caps, windows):
                return self._local_standing(lease)
            return await self._renew(ask.scope, lease, windows, caps, ask)

    async def settle(self, ask: Ask, windows: Windows, cost_nano: int, tokens: int) -> None:
        """Into the lease (no call to Redis): sent with its next flush."""
        lease = self._leases.get(ask.scope) or self._lease(ask.scope)
        held = lease.held.pop(ask.request_id, 0)
        lease.held_nano -= held
        period = (windows.day, windows.month)
        lease.spent[period] = lease.spent.get(period, 0) + cost_nano
        lease.unsent_nano += cost_nano
        if lease.money is not None:
            lease.money += held - cost_nano  # the claim's unspent part is free again
        if lease.windows is not None and lease.windows.minute == windows.minute:
            extra = tokens - ask.tokens  # what the request used beyond its claim
            if lease.tokens is not None:
                lease.tokens -= extra
            else:
                lease.count_tokens += extra

    async def standing(self, scope: str, windows: Windows) -> Standing:
        lease = self._leases.get(scope)
        if lease is None:
            return await ScopeKeys.of(self._prefix, scope).standing(self._client, windows)
        # a renewal in flight has taken the spend it sends out of the lease, and Redis may not
        # have it yet: read once it is back (CI caught /v1/spend showing $0 in that moment)
        async with lease.lock:
            return await self._standing_of(scope, lease, windows)

    async def _standing_of(self, scope: str, lease: _Lease, windows: Windows) -> Standing:
        if _same(lease.windows, windows) and self._clock() - lease.granted_at < self._flush_s * 2:
            return self._local_standing(lease)
        found = await ScopeKeys.of(self._prefix, scope).standing(self._client, windows)
        # as `_local_standing` tells it: what this process settled and has not sent yet is
        # spent all the same, and of its lease only what requests in flight hold is reserved
        return replace(
            found,
            spent_day_nano=found.spent_day_nano
            + sum(nano for (day, _), nano in lease.spent.items() if day == windows.day),
            spent_month_nano=found.spent_month_nano
            + sum(nano for (_, month), nano in lease.spent.items() if month == windows.month),
            reserved_nano=max(found.reserved_nano - lease.reserved, 0) + lease.held_nano,
        )

    async def aclose(self) -> None:
        """Flush every lease (its unused slices go back) and close."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        with contextlib.suppress(StoreUnavailable):
            await self.flush(everything=True)
        await self._scripts.drain()
        await self._client.aclose()

    def _lease(self, scope: str) -> _Lease:
        lease = self._leases.get(scope)
        if lease is None:
            lease = self._leases[scope] = _Lease()
        return lease

    # -- leases --------------------------------------------------------------------------------

    def _take(self, lease: _Lease, ask: Ask, caps: Caps, windows: Windows) -> bool:
        """Admit `ask` from the lease if it fits (same windows and caps, not due to renew)."""
        if (
            not _same(lease.windows, windows)
            or (lease.caps is not caps and lease.caps != caps)  # (the same Caps, mostly)
            or self._clock() - lease.granted_at > self._ttl_s / 3
        ):
            return False
        if lease.money is not None and ask.cost_nano > lease.money:
            return False
        if lease.requests is not None and lease.requests < 1:
            return False
        if lease.tokens is not None and ask.tokens > lease.tokens:
            return False
        lease.held[ask.request_id] = ask.cost_nano
        lease.held_nano += ask.cost_nano
        lease.used = True
        if lease.money is not None:
            lease.money -= ask.cost_nano
        if lease.requests is not None:
            lease.requests -= 1
        else:
            lease.count_requests += 1
        if lease.tokens is not None:
            lease.tokens -= ask.tokens
        else:
            lease.count_tokens += ask.tokens
        return True

    def _local_standing(self, lease: _Lease) -> Standing:
        """Redis's counters at the grant, with what this process did since."""
        day, month, reserved, requests, tokens = lease.snapshot
        unsent = lease.unsent_nano
        return Standing(
            True,
            None,
            day + unsent,
            month + unsent,
            reserved - lease.reserved + lease.held_nano,  # others', and in flight here
            requests - (lease.requests or 0) + lease.count_requests,
            tokens - (lease.tokens or 0) + lease.count_tokens,
        )

    def _outgoing(self, lease: _Lease, windows: Windows) -> list[_Flush]:
        """What the next call sends: flushes whose reply was lost, then what the lease holds
        now (spend; unused rate slices back, or what was counted locally). The lease's free
        money goes back with its reservation."""
        flushes = lease.unsure
        for flush in flushes:
            if flush.minute != windows.minute:  # that minute is over: its counters too
                flush.requests = flush.tokens = 0
        minute = lease.windows.minute if lease.windows is not None else windows.minute
        periods = dict(lease.spent)
        rates = (
            lease.count_requests - (lease.requests or 0),
            lease.count_tokens - (lease.tokens or 0),
        )
        if rates != (0, 0) and minute == windows.minute and not periods:
            periods[(windows.day, windows.month)] = 0
        for index, ((day, month), spent) in enumerate(periods.items()):
            self._serial += 1
            flush = _Flush(f"{self._process}:{self._serial}", day, month, minute, spent)
            if index == 0 and minute == windows.minute:
                flush.requests, flush.tokens = rates
            flushes.append(flush)
        lease.spent = {}
        lease.unsent_nano = 0
        lease.count_requests = lease.count_tokens = 0
        lease.money = lease.requests = lease.tokens = 0  # nothing admitted from it meanwhile
        return flushes

    async def _renew(
        self, scope: str, lease: _Lease, windows: Windows, caps: Caps, ask: Ask | None
    ) -> Standing:
        """One script call: flush, release the old reservation, admit `ask` (if any) and take
        a new slice. Callers hold `lease.lock`."""
        unlimited = (lease.money is None, lease.requests is None, lease.tokens is None)
        lease.unsure = self._outgoing(lease, windows)
        held = lease.held_nano
        want = ask is not None or lease.used
        lease.used = False
        self._serial += 1
        names = ScopeKeys.of(self._prefix, scope)
        keys = [
            names.reserved,
            names.reservations,
            names.requests(windows.minute),
            names.tokens(windows.minute),
            names.day(windows.day),
            names.month(windows.month),
        ]
        args: list[Any] = [
            self._clock(),
            self._clock() + self._ttl_s,
            lease.member,
            len(lease.unsure),
        ]
        for flush in lease.unsure:
            keys += [
                f"{names.base}:flushed:{flush.marker}",
                names.day(flush.day),
                names.month(flush.month),
            ]
            args += [flush.spent, flush.requests, flush.tokens]
        cost = ask.cost_nano if ask is not None else 0
        tokens = ask.tokens if ask is not None else 0
        if ask is not None:
            lease.typical = (ask.cost_nano, ask.tokens)
        typical_cost, typical_tokens = lease.typical
        args += [
            int(ask is not None),
            cost,
            tokens,
            held,
            caps.nano_per_day,
            caps.nano_per_month,
            caps.requests_per_minute,
            caps.tokens_per_minute,
            self._max_requests * max(typical_cost, 1) if want else 0,
            self._max_requests if want else 0,
            self._max_requests * max(typical_tokens, 1) if want else 0,
            self._fraction,
            f"lease:{self._process}:{self._serial}",
            2 * math.ceil(windows.minute_reset_s) + 1,
            int(windows.day_reset_s) + _DAY_MARGIN_S,
            int(windows.month_reset_s) + _MONTH_MARGIN_S,
            2 * 86_400,  # a flush's marker outlives any retry of it
        ]
        try:
            found = await self._scripts.call("lease", keys, args)
        except ScriptUnavailable as exc:
            # Did the script run? Unknown (a lost reply), so nothing more is admitted from
            # this lease until a call succeeds; the flushes go again under their markers.
            lease.money, lease.requests, lease.tokens = (None if free else 0 for free in unlimited)
            lease.used = True
            raise StoreUnavailable(str(exc)) from exc
        lease.unsure = []
        admitted = bool(found[0])
        refused = found[1].decode() if isinstance(found[1], bytes) else str(found[1])
        day, month, reserved, requests, counted = (int(value) for value in found[2:7])
        money, free_requests, free_tokens = (int(value) for value in found[7:10])
        member = found[10].decode() if isinstance(found[10], bytes) else str(found[10])
        lease.member, lease.windows, lease.caps = member, windows, caps
        lease.reserved = int(member.rsplit("|", 1)[1]) if member else 0
        lease.granted_at = self._clock()
        lease.snapshot = (day, month, reserved, requests, counted)
        # settles while the call was out returned their claims' unspent part into `money`
        lease.money = None if money < 0 else money + (lease.money or 0)
        lease.requests = None if free_requests < 0 else free_requests
        lease.tokens = None if free_tokens < 0 else free_tokens + (lease.tokens or 0)
        if admitted and ask is not None:
            lease.held[ask.request_id] = ask.cost_nano
            lease.held_nano += ask.cost_nano
            lease.used = True
            return self._local_standing(lease)
        reason = next((r for r in REFUSALS if r == refused), None)
        return Standing(ask is None, reason, day, month, reserved, requests, counted)

    async def flush(self, *, everything: bool = False) -> None:
        """Send what each lease settled and renew it; a lease with nothing in flight and no
        use since its last flush is given back (its reservation released) and forgotten."""
        windows = Windows.at(self._clock(), self._rate_window_s)
        failure: StoreUnavailable | None = None
        for scope, lease in list(self._leases.items()):
            if lease.member == "" and lease.idle():
                self._leases.pop(scope, None)
                continue
            async with lease.lock:
                release = everything or lease.idle()
                caps = lease.caps or Caps()
                if release:
                    lease.used = False
                try:
                    await self._renew(scope, lease, windows, caps, None)
                except StoreUnavailable as exc:
                    failure = exc
                    continue
                if release and lease.idle() and lease.member == "":
                    self._leases.pop(scope, None)
        if failure is not None:
            try:
                raise failure
            finally:
                failure = None  # not held by this frame in its traceback: no reference cycle

    def _start_flusher(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_every())

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            with contextlib.suppress(StoreUnavailable):
                await self.flush()


def _same(granted: Windows | None, now: Windows) -> bool:
    """The same day, month and rate window."""
    return granted is now or (  # (the limiter makes one Windows a second)
        granted is not None
        and granted.minute == now.minute
        and granted.day == now.day
        and granted.month == now.month
    )
