"""JSONL ledger: one record per line in an append-only file, written through structlog."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import IO, Any

import orjson
import structlog

from router.ledger.base import (
    Entry,
    LedgerError,
    SeenWindow,
    SinkUnavailable,
    in_window,
    private_file,
    scan_for,
)


class _Lines:
    """What structlog writes to: a batch's rendered lines, appended in one write."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def write(self, line: bytes) -> None:
        self.lines.append(line)

    def flush(self) -> None:
        """structlog flushes after every line; the sink writes the batch at once instead."""


def _render(_: Any, __: str, event: MutableMapping[str, Any]) -> bytes:
    body: bytes = event["body"]  # already JSON, control characters escaped by orjson
    return body


class JSONLSink:
    name = "jsonl"

    def __init__(self, path: Path) -> None:
        private_file(path)
        self.path = path
        self._file: IO[bytes] = path.open("ab")
        self._lines = _Lines()
        self._log = structlog.wrap_logger(
            structlog.BytesLogger(self._lines),  # type: ignore[arg-type]
            processors=[_render],
            cache_logger_on_first_use=True,
        )

    def _append(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()

    async def write(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            self._log.msg("decision", body=entry.body)
        data, self._lines.lines = b"".join(self._lines.lines), []
        try:
            await asyncio.to_thread(self._append, data)
        except OSError as exc:
            raise SinkUnavailable(f"jsonl: {exc}") from exc

    async def aclose(self) -> None:
        self._file.close()


class JSONLReader:
    def __init__(self, path: Path, dedupe_window: int = 1_000_000) -> None:
        if not path.exists():
            raise LedgerError(f"no ledger at {path}")
        self._file = path.open("rb")
        self._window = dedupe_window

    def record(self, request_id: str) -> bytes | None:
        return scan_for(self.records(), request_id)

    def records(self, since: str | None = None, until: str | None = None) -> Iterator[bytes]:
        """File order (the order records were written), each request once."""
        seen = SeenWindow(self._window)
        self._file.seek(0)
        for raw in self._file:
            line = raw.rstrip(b"\n")
            if not line:
                continue
            record = orjson.loads(line)
            if in_window(record["ts"], since, until) and seen.first_time(record["request_id"]):
                yield line

    def close(self) -> None:
        self._file.close()
