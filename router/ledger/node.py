"""One SQLite writer per node: with `cascade serve --workers N` and a SQLite ledger, the
workers do not each open the database (N writers contending for one file's lock); they
send their batches over a Unix socket to one writer process, which commits what every
worker sent meanwhile together and acknowledges each batch once it is committed.

A worker's `NodeSink` is an ordinary sink to its `Ledger`: a batch counts as written only
when the writer acknowledged it, so the no-loss guarantees are the writer's (`ledger/
writer.py`): while the writer is unreachable (restarting after a crash) batches go to the
worker's spool and are replayed, in order, when it is back; a batch committed but not
acknowledged is sent again and stored once (request_id is unique). What a SIGKILL of a
worker loses is what it had not handed over yet (its queue, ≤ the 10 ms linger); a SIGKILL
of the writer loses nothing (unacknowledged batches are spooled by the workers).

Frame (both directions little work to parse): u32 length, then u32 count and per entry
u16 id, u16 ts, u16 team, u32 body lengths followed by the bytes. Acknowledgement: one byte,
1 committed, 0 not (the worker spools the batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import Sequence
from pathlib import Path

from structlog.typing import FilteringBoundLogger

from router.ledger.base import Entry, SinkUnavailable
from router.ledger.sqlite import SQLiteSink

_LENGTH = struct.Struct("<I")
_FIELDS = struct.Struct("<HHHI")
_MAX_FRAME = 256 * 1024 * 1024
_ACK_TIMEOUT_S = 30.0


def encode(entries: Sequence[Entry]) -> bytes:
    parts = [_LENGTH.pack(len(entries))]
    for entry in entries:
        request_id, ts, team = entry.request_id.encode(), entry.ts.encode(), entry.team.encode()
        parts += [_FIELDS.pack(len(request_id), len(ts), len(team), len(entry.body))]
        parts += [request_id, ts, team, entry.body]
    payload = b"".join(parts)
    return _LENGTH.pack(len(payload)) + payload


def decode(payload: bytes) -> list[Entry]:
    """A frame's entries; ValueError when it is not one."""
    try:
        (count,), at = _LENGTH.unpack_from(payload), _LENGTH.size
        entries = []
        for _ in range(count):
            id_size, ts_size, team_size, body_size = _FIELDS.unpack_from(payload, at)
            at += _FIELDS.size
            request_id = payload[at : at + id_size].decode()
            at += id_size
            ts = payload[at : at + ts_size].decode()
            at += ts_size
            team = payload[at : at + team_size].decode()
            at += team_size
            body = payload[at : at + body_size]
            at += body_size
            if len(body) != body_size:
                raise ValueError("a frame cut short")
            entries.append(Entry(request_id, ts, team, body))
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"not a ledger frame: {exc}") from None
    if at != len(payload):
        raise ValueError("trailing bytes in a ledger frame")
    return entries


class NodeSink:
    """A worker's sink: batches to the node's writer, written when it acknowledges."""

    name = "sqlite-node"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def write(self, entries: Sequence[Entry]) -> None:
        async with self._lock:
            try:
                if self._writer is None:
                    self._reader, self._writer = await asyncio.open_unix_connection(self.path)
                assert self._reader is not None
                self._writer.write(encode(entries))
                async with asyncio.timeout(_ACK_TIMEOUT_S):
                    await self._writer.drain()
                    ack = await self._reader.readexactly(1)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                await self._drop()
                raise SinkUnavailable(f"ledger writer: {type(exc).__name__}: {exc}") from exc
            if ack != b"\x01":
                raise SinkUnavailable("ledger writer could not commit the batch")

    async def _drop(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def aclose(self) -> None:
        async with self._lock:
            await self._drop()


class NodeWriter:
    """The node's one writer: frames from every worker committed together, then each
    acknowledged."""

    def __init__(self, database: Path, path: Path, logger: FilteringBoundLogger) -> None:
        self._sink = SQLiteSink(database)
        self._path = path
        self._log = logger
        self._pending: list[tuple[list[Entry], asyncio.Future[bool]]] = []
        self._wake = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self._committing = False
        self.committed = 0

    async def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()  # left by a writer that was killed
        old = os.umask(0o177)  # the socket: this user only
        try:
            self._server = await asyncio.start_unix_server(self._connection, self._path)
        finally:
            os.umask(old)
        self._committer = asyncio.create_task(self._commit_loop(), name="ledger-commit")

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(_LENGTH.size)
                (size,) = _LENGTH.unpack(head)
                if size > _MAX_FRAME:
                    raise ValueError(f"a frame of {size} bytes")
                entries = decode(await reader.readexactly(size))
                done = asyncio.get_running_loop().create_future()
                self._pending.append((entries, done))
                self._wake.set()
                writer.write(b"\x01" if await done else b"\x00")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker left (stopped, or killed)
        except ValueError as exc:
            self._log.error("ledger_frame_invalid", error=str(exc))
        finally:
            writer.close()

    async def _commit_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                self._committing = True
                ok = await self._commit([entry for entries, _ in batch for entry in entries])
                self._committing = False
                for _, done in batch:
                    if not done.done():
                        done.set_result(ok)

    async def _commit(self, entries: list[Entry]) -> bool:
        try:
            await self._sink.write(entries)
        except Exception as exc:  # noqa: BLE001 - a batch not committed is spooled by its worker
            self._log.warning("ledger_writer_commit_failed", error=str(exc))
            return False
        self.committed += len(entries)
        return True

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._wake.set()
        while self._pending or self._committing:  # what arrived is committed and acknowledged
            self._wake.set()
            await asyncio.sleep(0.01)
        self._committer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._committer
        await self._sink.aclose()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()


async def run_node_writer(database: Path, path: Path, logger: FilteringBoundLogger) -> None:
    """Serve until SIGTERM/SIGINT (after the workers have stopped: the supervisor's order)."""
    import signal

    writer = NodeWriter(database, path, logger)
    await writer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)  # a reload is the workers' business
    logger.info("ledger_writer_serving", socket=str(path), database=str(database))
    await stop.wait()
    await writer.aclose()
    logger.info("ledger_writer_stopped", committed=writer.committed)
