"""Redis Stream ledger: one XADD per record, a batch in one server-side script call (atomic,
and one command to pack and one reply to parse instead of one per record).

Entries carry `request_id`, `ts` and `record` (the JSON). While Redis is unreachable the
writer spools and replays in order on reconnect; a batch whose EXEC was applied but whose
reply was lost is sent again, so readers de-duplicate by request_id (as `RedisStreamReader`
does). The stream is never trimmed by cascade: retention is the operator's choice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, cast

from router.ledger.base import (
    Entry,
    LedgerError,
    SeenWindow,
    SinkUnavailable,
    in_window,
    scan_for,
)

if TYPE_CHECKING:
    import redis
    import redis.asyncio

DEFAULT_STREAM = "cascade:ledger"


OWNERS_DAYS = 2  # a request's owner is kept for its UTC day and the next

# KEYS[1] = the stream, KEYS[2] = today's owners hash; ARGV = request_id, ts, record, owner,
# ... A request's owner (team, route, tier: router/records.py) goes to a hash per UTC day,
# kept OWNERS_DAYS days, so POST /v1/feedback on any replica can check whose answer it was.
_XADD_BATCH = f"""
local owners = 0
for i = 1, #ARGV, 4 do
  redis.call('XADD', KEYS[1], '*', 'request_id', ARGV[i], 'ts', ARGV[i + 1], 'record', ARGV[i + 2])
  if ARGV[i + 3] ~= '' then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 3])
    owners = owners + 1
  end
end
if owners > 0 then redis.call('EXPIRE', KEYS[2], {OWNERS_DAYS * 86_400}) end
return #ARGV / 4
"""


def owners_key(stream: str, day: str) -> str:
    """The hash of the owners of the requests recorded on `day` (YYYY-MM-DD, UTC)."""
    return f"{stream}:owners:{day}"


class RedisStreamSink:
    name = "redis"

    def __init__(self, url: str, stream: str = DEFAULT_STREAM, *, timeout_s: float = 2.0) -> None:
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.stream = stream
        # No retries inside the client: the writer spools and retries on its own schedule.
        self._client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._xadd_batch = self._client.register_script(_XADD_BATCH)  # EVALSHA, loads on NOSCRIPT

    async def write(self, entries: Sequence[Entry]) -> None:
        import redis

        args = [value for e in entries for value in (e.request_id, e.ts, e.body, e.owner)]
        today = owners_key(self.stream, time.strftime("%Y-%m-%d", time.gmtime()))
        try:
            await self._xadd_batch(keys=[self.stream, today], args=args)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise SinkUnavailable(f"redis: {exc}") from exc
        except redis.RedisError as exc:  # OOM, READONLY replica, ...: spool, retry later
            raise SinkUnavailable(f"redis: {exc}") from exc

    async def aclose(self) -> None:
        await self._client.aclose()


class RedisStreamReader:
    """Reads the stream in pages (XRANGE), filtering on `ts` and skipping duplicates."""

    def __init__(
        self, url: str, stream: str = DEFAULT_STREAM, *, dedupe_window: int = 1_000_000
    ) -> None:
        import redis

        self.stream = stream
        self._client: redis.Redis = redis.Redis.from_url(url, socket_timeout=30)
        self._window = dedupe_window
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise LedgerError(f"cannot read the Redis ledger: {exc}") from None

    def record(self, request_id: str) -> bytes | None:
        return scan_for(self.records(), request_id)

    def records(self, since: str | None = None, until: str | None = None) -> Iterator[bytes]:
        """Stream order (close to time order; replayed records come later), each id once."""
        seen = SeenWindow(self._window)
        start = "-"
        while page := self._client.xrange(self.stream, min=start, max="+", count=1000):
            for _id, fields in page:
                if not fields:  # an entry deleted by an operator
                    continue
                values = cast(dict[bytes, bytes], fields)
                ts = values[b"ts"].decode()
                request_id = values[b"request_id"].decode()
                if in_window(ts, since, until) and seen.first_time(request_id):
                    yield values[b"record"]
            last = page[-1][0]
            start = "(" + (last.decode() if isinstance(last, bytes) else str(last))

    def close(self) -> None:
        self._client.close()
