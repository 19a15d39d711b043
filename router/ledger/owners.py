"""Whose answer a request id is, for POST /v1/feedback (router/server/feedback.py): this
process's recent requests (the last `CASCADE_FEEDBACK_RECENT`), then the ledger — SQLite by
its index on request_id, Redis by the owners its sink keeps per UTC day for two days (so any
replica can check an answer another served). A JSONL ledger is never scanned for it."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from router.errors import APIError
from router.ledger.redis_stream import OWNERS_DAYS, owners_key
from router.ledger.targets import LedgerTarget
from router.records import owner_line, served_of

if TYPE_CHECKING:
    import redis.asyncio

    from router.ledger.sqlite import SQLiteReader

_LOOKUP_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Owner:
    team: str
    route: str | None
    final_tier: str | None
    local: bool
    value: float | None = None  # the local answer's acceptance value, when it was judged

    @classmethod
    def parse(cls, line: str) -> Owner | None:
        parts = line.split("\t")
        if len(parts) not in (4, 5):  # owners kept before the value was have four
            return None
        team, route, tier, local = parts[:4]
        try:
            value = float(parts[4]) if len(parts) == 5 and parts[4] else None
        except ValueError:
            value = None
        return cls(team, route or None, tier or None, local == "1", value)


class Owners:
    """Whose recent requests were: the last `size` this process recorded, then the ledger."""

    def __init__(self, size: int, target: LedgerTarget | None) -> None:
        self._recent: OrderedDict[str, str] = OrderedDict()
        self._size = size
        self._target = target
        self._thread: ThreadPoolExecutor | None = None
        self._sqlite: SQLiteReader | None = None
        self._redis: redis.asyncio.Redis | None = None

    def note(self, request_id: str, owner: str) -> None:
        self._recent[request_id] = owner
        if len(self._recent) > self._size:
            self._recent.popitem(last=False)

    async def find(self, request_id: str) -> Owner | None:
        line = self._recent.get(request_id)
        if line is None and self._target is not None:
            try:
                async with asyncio.timeout(_LOOKUP_TIMEOUT_S):
                    line = await self._in_ledger(self._target, request_id)
            except TimeoutError:
                raise APIError(
                    503, "the ledger did not answer in time; try again", code="ledger_busy"
                ) from None
        return None if line is None else Owner.parse(line)

    async def _in_ledger(self, target: LedgerTarget, request_id: str) -> str | None:
        if target.scheme == "sqlite" and target.path is not None:
            if self._thread is None:
                self._thread = ThreadPoolExecutor(1, thread_name_prefix="feedback-ledger")
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._sqlite_owner, request_id)
        if target.scheme == "redis" and target.url is not None:
            import redis.asyncio

            if self._redis is None:
                self._redis = redis.asyncio.Redis.from_url(target.url, socket_timeout=2.0)
            now = time.time()
            async with self._redis.pipeline(transaction=False) as pipe:
                for back in range(OWNERS_DAYS):
                    day = time.strftime("%Y-%m-%d", time.gmtime(now - back * 86400))
                    pipe.hget(owners_key(target.stream, day), request_id)
                found = await pipe.execute()
            return next((v.decode() for v in found if v is not None), None)
        return None

    def _sqlite_owner(self, request_id: str) -> str | None:
        from router.ledger.sqlite import SQLiteReader

        if self._sqlite is None:
            assert self._target is not None
            assert self._target.path is not None
            self._sqlite = SQLiteReader(self._target.path)
        body = self._sqlite.record(request_id)
        if body is None:
            return None
        record = orjson.loads(body)
        if record.get("kind") is not None:  # a shadow check, feedback, ...: not an answer
            return None
        return owner_line(
            str(record.get("team") or ""),
            record.get("route"),
            record.get("final_tier"),
            served_of(record),
        )

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
        if self._thread is not None:
            if self._sqlite is not None:
                self._thread.submit(self._sqlite.close).result()
            self._thread.shutdown()
