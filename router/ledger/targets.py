"""`CASCADE_LEDGER` URLs and the sink or reader each one names.

sqlite:///var/ledger.db        relative path (SQLAlchemy's convention)
sqlite:////srv/ledger.db       absolute path
redis://host:6379/0            Redis Stream `cascade:ledger` (`?stream=NAME` for another)
redis                          the Redis at CASCADE_REDIS_URL
jsonl:///var/decisions.jsonl   JSONL file (same path rules as sqlite)
none                           discard records (for benchmarks only)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, parse_qs, urlencode, urlsplit, urlunsplit

from router.ledger.base import Entry, LedgerError, Reader, Sink
from router.ledger.jsonl import JSONLReader, JSONLSink
from router.ledger.redis_stream import DEFAULT_STREAM, RedisStreamReader, RedisStreamSink
from router.ledger.sqlite import SQLiteReader, SQLiteSink
from router.redact import redact


@dataclass(frozen=True, slots=True)
class LedgerTarget:
    scheme: str  # a key of SCHEMES
    path: Path | None = None  # sqlite, jsonl
    url: str | None = None  # redis, without cascade's own query parameters
    stream: str = DEFAULT_STREAM

    def __str__(self) -> str:
        if self.path is not None:
            return f"{self.scheme}:///{self.path}"
        if self.url is not None:
            return redact(f"{self.url} (stream {self.stream})")
        return self.scheme

    @property
    def one_writer_per_node(self) -> bool:
        """Whether the workers of one node hand their records to one writer process."""
        return SCHEMES[self.scheme].one_writer_per_node


class NullSink:
    """Discards records: `CASCADE_LEDGER=none`, to measure what the ledger costs."""

    name = "none"

    async def write(self, entries: Sequence[Entry]) -> None:
        return None

    async def aclose(self) -> None:
        return None


class _EmptyReader:
    def records(self, since: str | None = None, until: str | None = None) -> Iterator[bytes]:
        return iter(())

    def record(self, request_id: str) -> bytes | None:
        return None

    def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class _Scheme:
    url_schemes: tuple[str, ...]  # the URL schemes that name it
    forms: tuple[str, ...]  # how CASCADE_LEDGER writes it (the error message lists them)
    parse: Callable[[str, SplitResult], LedgerTarget]
    sink: Callable[[LedgerTarget], Sink]
    reader: Callable[[LedgerTarget], Reader]
    one_writer_per_node: bool = False  # a file several processes must not write at once


def _file(value: str, parts: SplitResult) -> LedgerTarget:
    if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
        raise LedgerError(f"ledger URL {value!r}: expected {_FORMS}")
    path = parts.path[1:]  # sqlite:///rel -> "rel"; sqlite:////abs -> "/abs"
    return LedgerTarget(parts.scheme, path=Path(path))


def _redis(_: str, parts: SplitResult) -> LedgerTarget:
    query = parse_qs(parts.query)
    stream = query.pop("stream", [DEFAULT_STREAM])[0]
    url = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
    return LedgerTarget("redis", url=url, stream=stream)


def _path(target: LedgerTarget) -> Path:
    assert target.path is not None  # parse_ledger_url sets it for path schemes
    return target.path


def _url(target: LedgerTarget) -> str:
    assert target.url is not None  # parse_ledger_url sets it for redis
    return target.url


# The one table of ledger schemes: what each writes to and reads from.
SCHEMES: dict[str, _Scheme] = {
    "sqlite": _Scheme(
        ("sqlite",),
        ("sqlite:///PATH", "sqlite:////ABS/PATH"),
        _file,
        lambda t: SQLiteSink(_path(t)),
        lambda t: SQLiteReader(_path(t)),
        one_writer_per_node=True,
    ),
    "jsonl": _Scheme(
        ("jsonl",),
        ("jsonl:///PATH",),
        _file,
        lambda t: JSONLSink(_path(t)),
        lambda t: JSONLReader(_path(t)),
    ),
    "redis": _Scheme(
        ("redis", "rediss", "unix"),
        ("redis://HOST:PORT/DB", "redis"),
        _redis,
        lambda t: RedisStreamSink(_url(t), t.stream),
        lambda t: RedisStreamReader(_url(t), t.stream),
    ),
    "none": _Scheme((), ("none",), _file, lambda _: NullSink(), lambda _: _EmptyReader()),
}
_FORMS = ", ".join(form for scheme in SCHEMES.values() for form in scheme.forms)
_BY_URL_SCHEME = {name: scheme for scheme in SCHEMES.values() for name in scheme.url_schemes}


def parse_ledger_url(text: str, redis_url: str | None = None) -> LedgerTarget:
    value = text.strip()
    if value == "none":
        return LedgerTarget("none")
    if value == "redis":
        if not redis_url:
            raise LedgerError("CASCADE_LEDGER=redis needs CASCADE_REDIS_URL")
        value = redis_url
    parts = urlsplit(value)
    scheme = _BY_URL_SCHEME.get(parts.scheme)
    if scheme is None:
        raise LedgerError(f"ledger URL {redact(value)!r}: expected {_FORMS}")
    return scheme.parse(value, parts)


def open_sink(target: LedgerTarget) -> Sink:
    return SCHEMES[target.scheme].sink(target)


def open_reader(target: LedgerTarget) -> Reader:
    return SCHEMES[target.scheme].reader(target)
