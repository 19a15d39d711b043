"""The ledger writer: records leave the request path through a bounded queue, are delivered
to the sink in batches by a background task, and go to the spool whenever the sink cannot
take them (down, slow, or the queue full). Nothing is dropped silently.

Order of events for one record:
    submit() ─ queue (≤ max_queue) ─ drain task, batch ≤ batch_size ─ sink
        │ queue full                          │ sink unavailable, or the spool still
        ▼                                     ▼ holds records (to keep their order)
      spool (fsync'd ≤ fsync_window_s after an append) ─ replayed in order when the sink is back
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from structlog.typing import FilteringBoundLogger

from router.ledger.base import Entry, Recorded, Sink
from router.ledger.spool import Spool


@dataclass(frozen=True, slots=True)
class LedgerStats:
    sink: str
    available: bool
    queue_depth: int
    spool_bytes: int
    written: int  # delivered straight to the sink
    spooled: int  # appended to the spool
    replayed: int  # delivered from the spool
    lost: int  # could not even be spooled (disk error): each one is logged with its id
    corrupt: int  # spool lines that were not records (a torn write), kept aside


class Ledger:
    def __init__(
        self,
        sink: Sink,
        spool_folder: Path,
        logger: FilteringBoundLogger,
        *,
        max_queue: int = 10_000,
        batch_size: int = 500,
        linger_s: float = 0.01,
        fsync_window_s: float = 0.01,
        retry_s: float = 0.5,
        max_retry_s: float = 5.0,
    ) -> None:
        self.sink = sink
        self._log = logger
        self._spool = Spool.claim(spool_folder)
        self._spool_folder = spool_folder
        self._queue: deque[Recorded] = deque()
        self._max_queue = max_queue
        self._batch = batch_size
        self._linger = linger_s
        self._fsync_window = fsync_window_s
        self._retry_s = retry_s
        self._max_retry_s = max_retry_s
        self._delay = retry_s
        self._next_retry = 0.0
        self._available = True
        self._closing = False
        self._wake = asyncio.Event()
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._final: LedgerStats | None = None  # after aclose
        self._discard = sink.name == "none"  # CASCADE_LEDGER=none: not even serialised
        self._counts = {"written": 0, "spooled": 0, "replayed": 0, "lost": 0, "corrupt": 0}

    # -- the request path ------------------------------------------------------------------

    def submit(self, record: Recorded) -> None:
        """Hand over a finished record; never blocks, never raises."""
        if self._discard:
            return
        if len(self._queue) >= self._max_queue:
            self._to_spool([Entry.of(record)])
        else:
            self._queue.append(record)
        self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._adopt_orphans()
        self._tasks = [
            asyncio.create_task(self._drain_loop(), name="ledger-drain"),
            asyncio.create_task(self._sync_loop(), name="ledger-fsync"),
        ]

    async def aclose(self) -> None:
        """Deliver (or spool) everything queued; what the sink still cannot take stays in the
        fsync'd spool for the next start. Call when no request can submit any more."""
        self._closing = True
        self._wake.set()
        drainer, syncer = self._tasks
        await drainer
        if self._spool.pending:
            await self._replay(force=True)
        syncer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await syncer
        if self._spool.pending:
            self._log.warning(
                "ledger_spool_kept", spool=str(self._spool.path), bytes=self._spool.size
            )
        self._spool.sync()
        self._final = self.stats()
        self._spool.close()
        await self.sink.aclose()

    def stats(self) -> LedgerStats:
        if self._final is not None:
            return self._final
        return LedgerStats(
            sink=self.sink.name,
            available=self._available,
            queue_depth=len(self._queue),
            spool_bytes=self._spool.size,
            **self._counts,
        )

    # -- background work ------------------------------------------------------------------

    async def _drain_loop(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                await self._wait_for_work()
            try:
                if self._spool.pending:
                    await self._replay()
                count = min(len(self._queue), self._batch)
                if count:
                    batch = [self._queue.popleft() for _ in range(count)]
                    await self._deliver([Entry.of(record) for record in batch])
            except Exception:  # noqa: BLE001 (a bug here must not stop the ledger)
                self._log.exception("ledger_drain_failed")

    async def _wait_for_work(self) -> None:
        timeout = None
        if self._spool.pending:
            timeout = max(0.0, self._next_retry - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()
        if self._linger and 0 < len(self._queue) < self._batch and not self._closing:
            await asyncio.sleep(self._linger)  # gather a batch: one commit for many records

    async def _sync_loop(self) -> None:
        """fsync the spool after appends, at most once per fsync window."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            started = time.monotonic()
            await asyncio.to_thread(self._spool.sync)
            await asyncio.sleep(max(0.0, self._fsync_window - (time.monotonic() - started)))

    async def _deliver(self, entries: list[Entry]) -> None:
        if self._spool.pending:  # an outage is being worked off: stay behind it, in order
            self._to_spool(entries)
            return
        try:
            await self.sink.write(entries)
        except Exception as exc:  # noqa: BLE001 (SinkUnavailable or a sink bug: spool, never drop)
            self._outage(exc)
            self._to_spool(entries)
        else:
            self._counts["written"] += len(entries)

    async def _replay(self, *, force: bool = False) -> None:
        """Send the spool to the sink in order, a batch at a time, once the retry is due."""
        if not force and time.monotonic() < self._next_retry:
            return
        spool = self._spool
        while spool.pending:
            lines, offset = spool.read(self._batch)
            if offset == spool.offset:
                break  # nothing whole to read (cannot happen: appends are whole lines)
            entries = []
            for line in lines:
                try:
                    entries.append(Entry.parse(line))
                except ValueError:
                    self._set_aside(line)
            try:
                if entries:
                    await self.sink.write(entries)
            except Exception as exc:  # noqa: BLE001 (as in _deliver)
                self._outage(exc)
                return
            spool.offset = offset
            self._counts["replayed"] += len(entries)
        if not spool.pending:
            spool.clear()  # no await since the check: nothing was appended meanwhile
        self._recovered()

    # -- helpers ----------------------------------------------------------------------------

    def _to_spool(self, entries: list[Entry]) -> None:
        try:
            self._spool.append([entry.body for entry in entries])
        except OSError as exc:
            self._counts["lost"] += len(entries)
            self._log.error(
                "ledger_records_lost",
                error=str(exc),
                request_ids=[entry.request_id for entry in entries],
            )
        else:
            self._counts["spooled"] += len(entries)
            self._dirty.set()

    def _outage(self, exc: Exception) -> None:
        now = time.monotonic()
        if self._available:
            self._available = False
            self._delay = self._retry_s
            self._log.warning("ledger_sink_unavailable", sink=self.sink.name, error=str(exc))
        else:
            self._delay = min(self._delay * 2, self._max_retry_s)
        self._next_retry = now + self._delay

    def _recovered(self) -> None:
        if not self._available:
            self._available = True
            self._log.info(
                "ledger_sink_recovered", sink=self.sink.name, replayed=self._counts["replayed"]
            )
        self._delay = self._retry_s
        self._next_retry = 0.0

    def _set_aside(self, line: bytes) -> None:
        self._counts["corrupt"] += 1
        with (self._spool_folder / "corrupt.jsonl").open("ab") as kept:
            kept.write(line + b"\n")
        self._log.error("ledger_spool_line_corrupt", spool=str(self._spool.path))

    def _adopt_orphans(self) -> None:
        """Move what stopped workers left in their spools into ours, to be replayed first."""
        for orphan in Spool.orphans(self._spool_folder, self._spool.path):
            moved = 0
            while orphan.pending:
                lines, orphan.offset = orphan.read(self._batch)
                self._spool.append(lines)
                moved += len(lines)
            orphan.clear()
            orphan.close()
            self._log.info("ledger_spool_adopted", spool=str(orphan.path), records=moved)
        if self._spool.pending:
            self._spool.sync()
            self._next_retry = 0.0
