"""What every ledger sink and reader provides, and the unit they exchange."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

import orjson


class LedgerError(Exception):
    """A ledger cannot be opened or read (bad URL, newer schema, missing file)."""


class SinkUnavailable(Exception):
    """The sink cannot take records right now; the writer spools them and retries."""


class Recorded(Protocol):
    """What the ledger stores: a decision record, or a shadow check's record (kind shadow)."""

    request_id: str
    ts: str
    team: str


class Entry(NamedTuple):
    """One record, serialised once, with the fields sinks index beside its JSON."""

    request_id: str
    ts: str
    team: str
    body: bytes  # one JSON object, no newline; orjson escapes control characters
    owner: str = ""  # a request's DecisionRecord.owner(), for feedback (the Redis sink keeps it)

    @classmethod
    def of(cls, record: Recorded) -> Entry:
        # default=str: a value orjson cannot serialise is written as text rather than lost.
        owner = getattr(record, "owner", None)
        return cls(
            record.request_id,
            record.ts,
            record.team,
            orjson.dumps(record, default=str),
            owner() if callable(owner) else "",
        )

    @classmethod
    def parse(cls, body: bytes) -> Entry:
        """Rebuild an entry from its JSON (spool replay); ValueError when it is not a record."""
        value = orjson.loads(body)
        if not isinstance(value, dict) or not isinstance(value.get("request_id"), str):
            raise ValueError("not a decision record")
        return cls(value["request_id"], str(value.get("ts", "")), str(value.get("team", "")), body)


class Sink(Protocol):
    """Where the writer delivers batches. `write` is all-or-nothing from the caller's view:
    it returns when every entry is stored, or raises SinkUnavailable (some may be stored:
    readers de-duplicate by request_id)."""

    name: str

    async def write(self, entries: Sequence[Entry]) -> None: ...

    async def aclose(self) -> None: ...


class Reader(Protocol):
    """Records of a ledger, each request once, `since <= ts < until`: in time order for
    SQLite, in stored order (close to time order) for Redis and JSONL."""

    def records(self, since: str | None = None, until: str | None = None) -> Iterator[bytes]: ...

    def record(self, request_id: str) -> bytes | None:
        """The record of one request (the gateway's id), or None."""
        ...

    def close(self) -> None: ...


def scan_for(records: Iterator[bytes], request_id: str) -> bytes | None:
    """The record of `request_id` among `records` (a reader without an index on it)."""
    needle = orjson.dumps(request_id)  # the quoted id: parsed only where it appears
    for body in records:
        if needle in body and orjson.loads(body).get("request_id") == request_id:
            return body
    return None


class SeenWindow:
    """Request ids seen recently, for readers of sinks that may hold a record twice.

    A duplicate only arises when a batch was stored but its acknowledgement was lost, and
    that batch is the first thing replayed, so duplicates lie close together; the window
    bounds memory (about 100 bytes per id) instead of remembering every id.
    """

    def __init__(self, size: int = 1_000_000) -> None:
        self._size = size
        self._ids: dict[str, None] = {}

    def first_time(self, request_id: str) -> bool:
        if request_id in self._ids:
            return False
        self._ids[request_id] = None
        if len(self._ids) > self._size:
            del self._ids[next(iter(self._ids))]
        return True


def in_window(ts: str, since: str | None, until: str | None) -> bool:
    return (since is None or ts >= since) and (until is None or ts < until)


def private_file(path: Path) -> None:
    """Create `path` readable and writable by this user only (0600, whatever the umask),
    or make an existing one so: a ledger holds team names, users and tags."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    with contextlib.suppress(PermissionError):  # not ours to change: left as it is
        os.chmod(path, 0o600)
