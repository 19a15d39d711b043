from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from router.ledger import Entry, LedgerError
from router.ledger.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteReader, SQLiteSink, connect
from router.records import DecisionRecord


def record(n: int, ts: str, team: str = "a") -> Entry:
    return Entry.of(
        DecisionRecord(
            request_id=f"req-{n}",
            endpoint="/v1/chat/completions",
            policy_version="v",
            ts=ts,
            team=team,
        )
    )


async def test_batches_are_stored_once_and_read_in_time_order(tmp_path: Path) -> None:
    sink = SQLiteSink(tmp_path / "ledger.db")
    await sink.write([record(2, "2026-11-23T10:00:02.000Z"), record(1, "2026-11-23T10:00:01.000Z")])
    await sink.write([record(1, "2026-11-23T10:00:01.000Z")])  # a replayed duplicate
    await sink.write([record(3, "2026-11-24T00:00:00.000Z", team="b")])
    await sink.aclose()
    reader = SQLiteReader(tmp_path / "ledger.db")
    ids = [Entry.parse(body).request_id for body in reader.records()]
    assert ids == ["req-1", "req-2", "req-3"]
    window = [
        Entry.parse(b).request_id
        for b in reader.records("2026-11-23T10:00:02.000Z", "2026-11-24T00:00:00.000Z")
    ]
    assert window == ["req-2"]  # since is inclusive, until exclusive
    reader.close()
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        rows = db.execute("SELECT team, count(*) FROM records GROUP BY team ORDER BY team")
        assert rows.fetchall() == [("a", 2), ("b", 1)]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM records WHERE team = 'a' AND ts >= '2026'"
        ).fetchall()
        assert "records_team_ts" in str(plan)


def test_a_newer_schema_is_refused_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(LedgerError, match="upgrade cascade"):
        SQLiteSink(path)
    with pytest.raises(LedgerError, match="upgrade cascade"):
        SQLiteReader(path)


def test_reading_a_missing_ledger_says_so(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="no ledger"):
        SQLiteReader(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()  # reading never creates one


def test_a_version_1_ledger_is_migrated_with_its_records(tmp_path: Path) -> None:
    """Version 1 (WITHOUT ROWID) databases in the field move to version 2 at start, every
    record kept and still unique by request_id."""
    path = tmp_path / "v1.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        for statement in filter(str.strip, MIGRATIONS[0].split(";")):
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        rows = [
            (f"req-{i}", f"2026-11-23T10:00:0{i}.000Z", "a", b'{"request_id": "x"}')
            for i in range(3)
        ]
        db.executemany("INSERT INTO records (request_id, ts, team, body) VALUES (?, ?, ?, ?)", rows)
    with contextlib.closing(connect(path, create=True)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        stored = db.execute("SELECT request_id, ts, team, body FROM records ORDER BY ts").fetchall()
        assert stored == rows
        with pytest.raises(sqlite3.IntegrityError):
            db.execute(
                "INSERT INTO records (request_id, ts, team, body) VALUES (?, ?, ?, ?)", rows[0]
            )
        indices = {
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        assert {"records_ts", "records_team_ts"} <= indices


def test_batches_use_a_fixed_set_of_statement_sizes() -> None:
    from router.ledger.sqlite import _SIZES, _chunks

    for count in (0, 1, 7, 249, 250, 251, 500, 777, 1000):
        sizes = list(_chunks(count))
        assert sum(sizes) == count and set(sizes) <= set(_SIZES)
