"""The spool: a local append-only file of records a sink could not take, replayed in order.

Each serving process claims one spool file (`spool-<n>.jsonl` under the spool folder, held
with an exclusive lock), so workers never share one and a restarted server finds what its
predecessor left. Appends go straight to the file (a process crash loses nothing written);
`sync` fsyncs them, which the writer does at most 10 ms after an append.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

_CHUNK = 1 << 20


class Spool:
    def __init__(self, path: Path) -> None:
        """Open and lock `path`; BlockingIOError when another process holds it."""
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise
        self.offset = 0  # bytes already replayed
        self.dirty = False  # appended since the last sync
        size = self.size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            os.write(self._fd, b"\n")  # a line torn by a power cut ends here (and fails to parse)

    @classmethod
    def claim(cls, folder: Path) -> Spool:
        """The first spool file in `folder` that no other process holds."""
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(1024):
            try:
                return cls(folder / f"spool-{n}.jsonl")
            except BlockingIOError:
                continue
        raise RuntimeError(f"every spool file in {folder} is held by another process")

    @classmethod
    def orphans(cls, folder: Path, own: Path) -> Iterator[Spool]:
        """Non-empty spool files no process holds (left by workers that are gone); locked."""
        for path in sorted(folder.glob("spool-*.jsonl")):
            if path == own or path.stat().st_size == 0:
                continue
            try:
                yield cls(path)
            except BlockingIOError:
                continue

    @property
    def size(self) -> int:
        return os.fstat(self._fd).st_size

    @property
    def pending(self) -> bool:
        """Records wait here to be replayed."""
        return self.size > self.offset

    def append(self, bodies: list[bytes]) -> None:
        """One write(2) of whole lines (O_APPEND), so lines never interleave or tear."""
        data = b"".join(body + b"\n" for body in bodies)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self.dirty = True

    def sync(self) -> None:
        """fsync (blocking: run it off the event loop)."""
        self.dirty = False
        os.fsync(self._fd)

    def read(self, max_lines: int) -> tuple[list[bytes], int]:
        """Up to `max_lines` whole lines from `offset`, and the offset after them."""
        lines: list[bytes] = []
        offset = position = self.offset
        buffer = b""
        while len(lines) < max_lines:
            chunk = os.pread(self._fd, _CHUNK, position)
            if not chunk:
                break
            position += len(chunk)
            buffer += chunk
            start = 0
            while len(lines) < max_lines and (end := buffer.find(b"\n", start)) >= 0:
                if end > start:
                    lines.append(buffer[start:end])
                start = end + 1
            offset += start
            buffer = buffer[start:]
        return lines, offset

    def clear(self) -> None:
        """Everything was replayed: empty the file (if a crash undoes this, the records are
        replayed again, and stored once: sinks and readers de-duplicate by request_id)."""
        os.ftruncate(self._fd, 0)
        self.offset = 0
        self.dirty = False

    def close(self) -> None:
        os.close(self._fd)  # closing the descriptor releases the lock
