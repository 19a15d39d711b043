"""`CASCADE_LEDGER` URLs and the sink or reader each one names.

sqlite:///var/ledger.db        relative path (SQLAlchemy's convention)
sqlite:////srv/ledger.db       absolute path
redis://host:6379/0            Redis Stream `cascade:ledger` (`?stream=NAME` for another)
redis                          the Redis at CASCADE_REDIS_URL
jsonl:///var/decisions.jsonl   JSONL file (same path rules as sqlite)
none                           discard records (for benchmarks only)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from router.ledger.base import Entry, LedgerError, Reader, Sink
from router.ledger.jsonl import JSONLReader, JSONLSink
from router.ledger.redis_stream import DEFAULT_STREAM, RedisStreamReader, RedisStreamSink
from router.ledger.sqlite import SQLiteReader, SQLiteSink
from router.redact import redact

Scheme = Literal["sqlite", "jsonl", "redis", "none"]
_FORMS = "sqlite:///PATH, sqlite:////ABS/PATH, jsonl:///PATH, redis://HOST:PORT/DB, redis, none"


@dataclass(frozen=True, slots=True)
class LedgerTarget:
    scheme: Scheme
    path: Path | None = None  # sqlite, jsonl
    url: str | None = None  # redis, without cascade's own query parameters
    stream: str = DEFAULT_STREAM

    def __str__(self) -> str:
        if self.path is not None:
            return f"{self.scheme}:///{self.path}"
        if self.url is not None:
            return redact(f"{self.url} (stream {self.stream})")
        return self.scheme


def parse_ledger_url(text: str, redis_url: str | None = None) -> LedgerTarget:
    value = text.strip()
    if value == "none":
        return LedgerTarget("none")
    if value == "redis":
        if not redis_url:
            raise LedgerError("CASCADE_LEDGER=redis needs CASCADE_REDIS_URL")
        value = redis_url
    parts = urlsplit(value)
    if parts.scheme in ("sqlite", "jsonl"):
        if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
            raise LedgerError(f"ledger URL {value!r}: expected {_FORMS}")
        path = parts.path[1:]  # sqlite:///rel -> "rel"; sqlite:////abs -> "/abs"
        return LedgerTarget(parts.scheme, path=Path(path))  # type: ignore[arg-type]
    if parts.scheme in ("redis", "rediss", "unix"):
        query = parse_qs(parts.query)
        stream = query.pop("stream", [DEFAULT_STREAM])[0]
        url = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
        return LedgerTarget("redis", url=url, stream=stream)
    raise LedgerError(f"ledger URL {redact(value)!r}: expected {_FORMS}")


class NullSink:
    """Discards records: `CASCADE_LEDGER=none`, to measure what the ledger costs."""

    name = "none"

    async def write(self, entries: Sequence[Entry]) -> None:
        return None

    async def aclose(self) -> None:
        return None


def open_sink(target: LedgerTarget) -> Sink:
    if target.scheme == "sqlite":
        assert target.path is not None
        return SQLiteSink(target.path)
    if target.scheme == "jsonl":
        assert target.path is not None
        return JSONLSink(target.path)
    if target.scheme == "redis":
        assert target.url is not None
        return RedisStreamSink(target.url, target.stream)
    return NullSink()


class _EmptyReader:
    def records(self, since: str | None = None, until: str | None = None) -> Iterator[bytes]:
        return iter(())

    def close(self) -> None:
        return None


def open_reader(target: LedgerTarget) -> Reader:
    if target.scheme == "sqlite":
        assert target.path is not None
        return SQLiteReader(target.path)
    if target.scheme == "jsonl":
        assert target.path is not None
        return JSONLReader(target.path)
    if target.scheme == "redis":
        assert target.url is not None
        return RedisStreamReader(target.url, target.stream)
    return _EmptyReader()
