"""The writer against a real SQLite sink behind a switch that makes it refuse (the fault)."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from router.ledger import Entry, Ledger, SinkUnavailable
from router.ledger.spool import Spool
from router.ledger.sqlite import SQLiteReader, SQLiteSink
from router.observe.logs import make_logger
from router.records import DecisionRecord


class Switchable:
    name = "switchable"

    def __init__(self, path: Path) -> None:
        self.inner = SQLiteSink(path)
        self.down = False
        self.batches: list[int] = []

    async def write(self, entries: Sequence[Entry]) -> None:
        if self.down:
            raise SinkUnavailable("switched off")
        self.batches.append(len(entries))
        await self.inner.write(entries)

    async def aclose(self) -> None:
        await self.inner.aclose()


def make(n: int) -> DecisionRecord:
    return DecisionRecord(request_id=f"req-{n:04d}", endpoint="/v1/completions", policy_version="v")


def stored(path: Path) -> list[str]:
    reader = SQLiteReader(path)
    try:
        return [Entry.parse(body).request_id for body in reader.records()]
    finally:
        reader.close()


async def until(condition: Callable[[], bool], limit_s: float = 5.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def ledger(tmp_path: Path, sink: Switchable, log: io.StringIO, **options: float) -> Ledger:
    return Ledger(
        sink,
        tmp_path / "spool",
        make_logger("info", log),
        retry_s=0.01,
        max_retry_s=0.05,
        **options,  # type: ignore[arg-type]
    )


async def test_an_outage_spools_and_replays_every_record_once_in_order(tmp_path: Path) -> None:
    sink, log = Switchable(tmp_path / "l.db"), io.StringIO()
    writer = ledger(tmp_path, sink, log)
    writer.start()
    writer.submit(make(0))
    await until(lambda: writer.stats().written == 1)
    sink.down = True
    for n in range(1, 200):
        writer.submit(make(n))
        if n % 20 == 0:
            await asyncio.sleep(0.002)
    await until(lambda: writer.stats().spooled == 199)
    assert writer.stats().spool_bytes > 0
    assert not writer.stats().available
    sink.down = False
    writer.submit(make(200))  # arrives during the recovery: stays behind the spool
    await until(lambda: writer.stats().replayed + writer.stats().written == 201)
    await writer.aclose()
    assert stored(tmp_path / "l.db") == [f"req-{n:04d}" for n in range(201)]
    assert writer.stats().spool_bytes == 0
    events = log.getvalue()
    assert events.count("ledger_sink_unavailable") == 1  # once per outage, not per batch
    assert "ledger_sink_recovered" in events


async def test_a_full_queue_overflows_to_the_spool_not_the_floor(tmp_path: Path) -> None:
    sink = Switchable(tmp_path / "l.db")
    writer = ledger(tmp_path, sink, io.StringIO(), max_queue=3)
    writer.start()
    for n in range(10):  # no await: the drain task cannot run, the queue fills
        writer.submit(make(n))
    assert writer.stats().queue_depth == 3
    assert writer.stats().spooled == 7
    await writer.aclose()
    assert sorted(stored(tmp_path / "l.db")) == [f"req-{n:04d}" for n in range(10)]


async def test_records_spooled_at_shutdown_are_delivered_by_the_next_start(tmp_path: Path) -> None:
    sink = Switchable(tmp_path / "l.db")
    sink.down = True
    first = ledger(tmp_path, sink, io.StringIO())
    first.start()
    for n in range(5):
        first.submit(make(n))
    await first.aclose()  # the sink never came back: the records wait, fsync'd, in the spool
    assert stored(tmp_path / "l.db") == []
    assert (tmp_path / "spool" / "spool-0.jsonl").stat().st_size > 0
    second = ledger(tmp_path, Switchable(tmp_path / "l.db"), io.StringIO())
    second.start()
    await until(lambda: second.stats().replayed == 5)
    await second.aclose()
    assert stored(tmp_path / "l.db") == [f"req-{n:04d}" for n in range(5)]


async def test_a_gone_workers_spool_is_adopted_and_bad_lines_set_aside(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    folder.mkdir()
    left = Spool(folder / "spool-7.jsonl")  # what a worker that is gone left behind
    left.append([Entry.of(make(1)).body, b"not json", Entry.of(make(2)).body])
    left.close()
    log = io.StringIO()
    writer = ledger(tmp_path, Switchable(tmp_path / "l.db"), log)
    writer.start()
    await until(lambda: writer.stats().replayed == 2)
    await writer.aclose()
    assert stored(tmp_path / "l.db") == ["req-0001", "req-0002"]
    assert writer.stats().corrupt == 1
    assert (folder / "corrupt.jsonl").read_bytes() == b"not json\n"
    assert (folder / "spool-7.jsonl").stat().st_size == 0
    assert "ledger_spool_adopted" in log.getvalue()
