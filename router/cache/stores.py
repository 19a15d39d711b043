"""Where cached answers live: this process's bounded LRU, or Redis shared by every replica.

Both hold opaque bytes under a hex key with a time to live. Neither may fail a request: the
Redis store answers within its timeout or raises `CacheUnavailable`, and after a failure it
is not asked again for `retry_s` (a down Redis costs one timeout, not one per request).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from router.redis_pool import bounded_client, redis_errors


class CacheUnavailable(Exception):
    """The store could not be reached in time; the request goes on uncached."""


class CacheSkipped(CacheUnavailable):
    """Not asked: the store failed moments ago (not reported again)."""


class CacheStore(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def aclose(self) -> None: ...


class MemoryStore:
    """Least recently used first out, bounded by entries and by bytes; expired entries are
    dropped when met (and by the bound)."""

    def __init__(
        self, max_bytes: int, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self._clock = clock
        self.max_bytes, self.max_entries = max_bytes, max_entries

    @property
    def size(self) -> tuple[int, int]:
        """(entries, bytes) held now."""
        return len(self._entries), self._bytes

    def bound(self, max_bytes: int, max_entries: int) -> None:
        """New bounds (a policy change); evicts at once to meet them."""
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self._evict()

    async def get(self, key: str) -> bytes | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, value = found
        if expires <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        if len(value) > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self._clock() + ttl_s, value)
        self._bytes += len(value)
        self._evict()

    def _drop(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self._bytes -= len(value)

    def _evict(self) -> None:
        while self._entries and (
            self._bytes > self.max_bytes or len(self._entries) > self.max_entries
        ):
            key = next(iter(self._entries))
            self._drop(key)

    async def aclose(self) -> None:
        self._entries.clear()
        self._bytes = 0


class RedisStore:
    """GET / SET PX on one Redis, each call bounded by `timeout_s`."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        retry_s: float,
        prefix: str = "cascade:cache:",
        clock: Callable[[], float] = time.monotonic,
        max_connections: int = 64,
    ) -> None:
        self._client = bounded_client(
            url, timeout_s=timeout_s, pool_wait_s=timeout_s, max_connections=max_connections
        )
        self._prefix = prefix
        self._clock = clock
        self.timeout_s, self.retry_s = timeout_s, retry_s
        self._skip_until = 0.0
        self._errors = redis_errors()

    async def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._clock() < self._skip_until:
            raise CacheSkipped("skipped after a recent Redis error")
        try:
            async with asyncio.timeout(self.timeout_s):
                return await method(*args, **kwargs)
        except self._errors as exc:
            self._skip_until = self._clock() + self.retry_s
            raise CacheUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    async def get(self, key: str) -> bytes | None:
        found = await self._call(self._client.get, self._prefix + key)
        return found if isinstance(found, bytes) else None

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._call(self._client.set, self._prefix + key, value, px=max(1, int(ttl_s * 1000)))

    async def aclose(self) -> None:
        await self._client.aclose()
