"""The exact-match response cache: which requests it serves, under which key, from where.

`ResponseCache` lives as long as the server and owns the stores (this process's LRU, a Redis
shared by every replica); `PolicyCache` is one policy's reading of it — which store and TTL
each route uses — built when the policy loads (a route asking for Redis with no Redis
configured is a rejected policy, not a surprise at the first request).

The key is a SHA-256 over everything that changes the answer: the endpoint, the policy
version, the route, the rule and the tiers of the plan as admitted (a budget-shaped plan has
its own entries), the team (unless `shared_across_teams`), and the client's body as sent but
for the fields that do not change the answer (stream, stream_options, user, metadata,
store). Only deterministic requests are cached unless the policy says otherwise; a client's
`Cache-Control: no-cache` skips the read (the answer is stored afresh), `no-store` both.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from router.cache.entry import Entry
from router.cache.stores import (
    CacheSkipped,
    CacheStore,
    CacheUnavailable,
    MemoryStore,
    RedisStore,
)
from router.policy.model import CacheSpec, Policy
from router.request import ClientRequest
from router.routing import Decision

_NOT_IN_KEY = frozenset({"stream", "stream_options", "user", "metadata", "store"})
_MAX_PENDING_WRITES = 256  # stores in flight at most; beyond, answers go uncached
CacheStatus = Literal["hit", "miss", "bypass", "skip", "error"]


@dataclass(slots=True)
class Lookup:
    """One request's use of the cache. `status`: hit, miss, bypass (the client's
    Cache-Control), skip (not deterministic), error (the store did not answer)."""

    store: CacheStore
    key: str
    ttl_s: float
    read: bool
    write: bool
    status: CacheStatus


def directives(header: str) -> frozenset[str]:
    """Cache-Control directives, lower-cased, arguments dropped."""
    return frozenset(
        part.split("=", 1)[0].strip().lower() for part in header.split(",") if part.strip()
    )


def cache_key(
    *,
    endpoint: str,
    version: str,
    decision: Decision,
    scope: str,
    body: Mapping[str, Any],
) -> str:
    kept = {name: value for name, value in body.items() if name not in _NOT_IN_KEY}
    material = orjson.dumps(
        [
            endpoint,
            version,
            decision.route,
            decision.rule,
            # thresholds too: shadow.autotune moves them within one policy version
            [
                (step.tier, step.acceptance and step.acceptance.threshold)
                for step in decision.plan.steps
            ],
            scope,
            kept,
        ],
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(material).hexdigest()


class ResponseCache:
    """The stores, for the server's lifetime (entries outlive policy reloads; the policy
    version in the key keeps old answers from a new policy)."""

    def __init__(
        self,
        default: Literal["off", "memory", "redis"] | None,
        redis_url: str | None,
        on_error: Callable[[Exception], None],
    ) -> None:
        self.default = default  # CASCADE_CACHE
        self._redis_url = redis_url
        self._on_error = on_error
        self._memory: MemoryStore | None = None
        self._redis: RedisStore | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self.dropped_writes = 0

    def memory_size(self) -> tuple[int, int]:
        return self._memory.size if self._memory is not None else (0, 0)

    def for_policy(self, policy: Policy) -> PolicyCache:
        """`policy`'s cache (ValueError when it asks for Redis and none is configured)."""
        spec = policy.cache
        default = spec.store or self.default or "off"
        chosen = {
            name: (route.cache.store, route.cache.ttl_s)
            if route.cache is not None
            else (default, None)
            for name, route in policy.routes.items()
        }
        wants_redis = [name for name, (kind, _) in chosen.items() if kind == "redis"]
        if (wants_redis or default == "redis") and not self._redis_url:
            where = f"route '{wants_redis[0]}'" if wants_redis else "cache.store"
            raise ValueError(
                f"{where} caches in redis but neither CASCADE_CACHE=redis://... nor "
                "CASCADE_REDIS_URL is set"
            )
        stores = {name: self._store(kind, spec, ttl) for name, (kind, ttl) in chosen.items()}
        return PolicyCache(self, spec, stores, self._store(default, spec, None))

    def _store(
        self, kind: str, spec: CacheSpec, ttl: float | None
    ) -> tuple[CacheStore, float] | None:
        if kind == "off":
            return None
        if kind == "memory":
            if self._memory is None:
                self._memory = MemoryStore(spec.memory_max_bytes, spec.memory_max_entries)
            else:
                self._memory.bound(spec.memory_max_bytes, spec.memory_max_entries)
            return self._memory, ttl or spec.ttl_s
        assert self._redis_url is not None  # checked by for_policy
        timeout, retry = spec.redis_timeout_ms / 1000, spec.redis_retry_s
        if self._redis is None:
            self._redis = RedisStore(self._redis_url, timeout_s=timeout, retry_s=retry)
        else:
            self._redis.timeout_s, self._redis.retry_s = timeout, retry
        return self._redis, ttl or spec.ttl_s

    async def get(self, lookup: Lookup) -> Entry | None:
        try:
            found = await lookup.store.get(lookup.key)
        except CacheUnavailable as exc:
            lookup.status = "error"
            self._report(exc)
            return None
        entry = Entry.loads(found) if found is not None else None
        if entry is not None:
            lookup.status = "hit"
        return entry

    def put(self, lookup: Lookup, entry: Entry, max_bytes: int) -> None:
        """Store in the background (never on the client's time); a Redis that is down, an
        answer over `max_bytes` or too many stores in flight leave it uncached."""
        data = entry.dumps()
        if len(data) > max_bytes:
            return
        if len(self._writes) >= _MAX_PENDING_WRITES:
            self.dropped_writes += 1
            return
        task = asyncio.create_task(self._put(lookup, data), name="cache-put")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _put(self, lookup: Lookup, data: bytes) -> None:
        try:
            await lookup.store.put(lookup.key, data, lookup.ttl_s)
        except CacheUnavailable as exc:
            self._report(exc)

    def _report(self, exc: CacheUnavailable) -> None:
        if not isinstance(exc, CacheSkipped):
            self._on_error(exc)

    async def aclose(self) -> None:
        if self._writes:
            await asyncio.wait(self._writes, timeout=2)
        for store in (self._memory, self._redis):
            if store is not None:
                await store.aclose()


@dataclass(frozen=True, slots=True)
class PolicyCache:
    """One policy's cache: each route's store and TTL (None: not cached)."""

    owner: ResponseCache
    spec: CacheSpec
    routes: Mapping[str, tuple[CacheStore, float] | None]
    passthrough: tuple[CacheStore, float] | None  # tiers asked for by name

    def lookup(
        self,
        *,
        endpoint: str,
        version: str,
        decision: Decision,
        team: str,
        body: Mapping[str, Any],
        client: ClientRequest,
        cache_control: str,
    ) -> Lookup | None:
        """How this request uses the cache; None when its route is not cached."""
        plan = decision.plan
        found = self.passthrough if plan.passthrough else self.routes.get(plan.label)
        if found is None:
            return None
        store, ttl = found
        said = directives(cache_control)
        params = client.params
        deterministic = params.temperature == 0 or params.seed is not None
        status: CacheStatus = "miss"
        read = write = True
        if self.spec.deterministic_only and not deterministic:
            read = write = False
            status = "skip"
        elif "no-store" in said:
            read = write = False
            status = "bypass"
        elif "no-cache" in said:
            read, status = False, "bypass"
        key = (
            cache_key(
                endpoint=endpoint,
                version=version,
                decision=decision,
                scope="*" if self.spec.shared_across_teams else f"team:{team}",
                body=body,
            )
            if read or write
            else ""
        )
        return Lookup(store, key, ttl, read, write, status)

    async def get(self, lookup: Lookup) -> Entry | None:
        return await self.owner.get(lookup)

    def put(self, lookup: Lookup, entry: Entry) -> None:
        self.owner.put(lookup, entry, self.spec.max_entry_bytes)
