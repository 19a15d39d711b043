"""SQLite ledger: the embedded default. WAL, batched inserts, versioned schema.

The record's JSON is stored whole (`body`, the UTF-8 bytes as written) beside the columns
that are indexed (request_id, ts, team); `route`, `final_tier`, `status` and `cost_usd` are
virtual columns SQLite reads from the JSON when a query asks for them, so inserting pays for
the table (rows appended in rowid order) and three small indices, and no JSON parsing.
`request_id` is unique: a batch delivered twice (after a lost acknowledgement or a replay
interrupted by a crash) is stored once.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from router.ledger.base import Entry, LedgerError, SinkUnavailable, private_file


def _virtual(column: str, kind: str = "TEXT") -> str:
    """A column read from the JSON when queried (costs nothing at insert)."""
    return (
        f"{column} {kind} GENERATED ALWAYS AS "
        f"(json_extract(CAST(body AS TEXT), '$.{column}')) VIRTUAL"
    )


_COLUMNS = f"""
        ts TEXT NOT NULL,
        team TEXT NOT NULL,
        body BLOB NOT NULL,  -- UTF-8 JSON as orjson wrote it (CAST(body AS TEXT) for json_*)
        {_virtual("route")},
        {_virtual("final_tier")},
        {_virtual("status")},
        {_virtual("cost_usd", "REAL")}"""

# Each entry moves the schema one version up; never edit one that has shipped, add another.
MIGRATIONS: tuple[str, ...] = (
    # 1: records keyed by request_id
    f"""
    CREATE TABLE records (
        request_id TEXT NOT NULL PRIMARY KEY,{_COLUMNS}
    ) WITHOUT ROWID;
    CREATE INDEX records_ts ON records (ts);
    CREATE INDEX records_team_ts ON records (team, ts);
    """,
    # 2: a rowid table, request_id a unique index. Rows of ~1 KB are too large for a WITHOUT
    # ROWID b-tree (SQLite advises under 1/20 of a page): inserts cost ~30% less this way.
    f"""
    CREATE TABLE records_v2 (
        request_id TEXT NOT NULL UNIQUE,{_COLUMNS}
    );
    INSERT INTO records_v2 (request_id, ts, team, body)
        SELECT request_id, ts, team, body FROM records ORDER BY ts, request_id;
    DROP TABLE records;
    ALTER TABLE records_v2 RENAME TO records;
    CREATE INDEX records_ts ON records (ts);
    CREATE INDEX records_team_ts ON records (team, ts);
    """,  # noqa: S608 (a fixed schema script: only the column list above is joined in)
)
SCHEMA_VERSION = len(MIGRATIONS)
_ROWS_PER_STATEMENT = 250  # 1,000 parameters, under SQLite's 32,766


_SIZES = (_ROWS_PER_STATEMENT, 128, 64, 32, 16, 8, 4, 2, 1)


def _chunks(count: int) -> Iterator[int]:
    """Statement sizes that add up to `count`, from a fixed set of nine: the connection's
    cache of prepared statements (one per distinct SQL text, each holding a compiled
    multi-row INSERT) stays small. With one size per batch length it grew by ~13 MB over a
    300k-request soak, a new statement for every new batch length."""
    for size in _SIZES:
        while count >= size:
            yield size
            count -= size


@functools.cache
def _insert_sql(rows: int) -> str:
    values = ", ".join(["(?, ?, ?, ?)"] * rows)
    # only placeholders are joined in: values are always bound parameters
    return f"INSERT OR IGNORE INTO records (request_id, ts, team, body) VALUES {values}"  # noqa: S608


def connect(path: Path, *, create: bool) -> sqlite3.Connection:
    """Open (and, with `create`, create or migrate) a ledger database."""
    if not create and not path.exists():
        raise LedgerError(f"no ledger at {path}")
    if create:
        private_file(path)  # its -wal and -shm files take the same mode
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA busy_timeout = 10000")  # other workers write too
    version = int(connection.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        connection.close()
        raise LedgerError(
            f"{path} has ledger schema version {version}; this cascade knows up to "
            f"{SCHEMA_VERSION}: upgrade cascade to read it"
        )
    if create:
        connection.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a committed batch survives a process crash (SIGKILL); only a
        # power cut can lose the last commits.
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA wal_autocheckpoint = 10000")  # pages: fewer, larger checkpoints
        migrate(connection)
    elif version < SCHEMA_VERSION:
        connection.close()
        raise LedgerError(f"{path} has ledger schema version {version}; serve once to migrate")
    return connection


def migrate(connection: sqlite3.Connection) -> None:
    """Apply every migration above the database's `user_version`, each in a transaction."""
    connection.execute("BEGIN IMMEDIATE")  # one migrator at a time across workers
    try:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in filter(str.strip, script.split(";")):
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


class SQLiteSink:
    """Batches go in as multi-row INSERTs (one transaction per 250 records), on one thread
    that owns the connection."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection = connect(path, create=True)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ledger-sqlite")

    def _insert(self, rows: list[tuple[str, str, str, bytes]]) -> None:
        # Multi-row INSERTs, each its own transaction: SQLite runs a statement in one call
        # with the GIL released, where executemany would take the GIL back after every row
        # and queue behind the busy event loop each time (a convoy that starved this thread).
        start = 0
        for size in _chunks(len(rows)):
            chunk = rows[start : start + size]
            self._connection.execute(_insert_sql(size), [v for row in chunk for v in row])
            start += size

    async def write(self, entries: Sequence[Entry]) -> None:
        rows = [(e.request_id, e.ts, e.team, e.body) for e in entries]
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._thread, self._insert, rows)
        except sqlite3.Error as exc:  # locked past busy_timeout, disk full, I/O error
            raise SinkUnavailable(f"sqlite: {exc}") from exc

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._connection.close)
        self._thread.shutdown()


class SQLiteReader:
    def __init__(self, path: Path) -> None:
        self._connection = connect(path, create=False)

    def records(self, since: str | None = None, until: str | None = None) -> Iterator[bytes]:
        cursor = self._connection.execute(
            "SELECT body FROM records WHERE ts >= ? AND ts < ? ORDER BY ts, request_id",
            (since or "", until or "\uffff"),
        )
        cursor.arraysize = 1000
        while rows := cursor.fetchmany():
            for (body,) in rows:
                yield body

    def record(self, request_id: str) -> bytes | None:
        found = self._connection.execute(
            "SELECT body FROM records WHERE request_id = ?", (request_id,)
        ).fetchone()
        return None if found is None else bytes(found[0])

    def close(self) -> None:
        self._connection.close()
