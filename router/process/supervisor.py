"""`cascade serve --workers N`: N worker processes sharing the port, supervised.

A worker that dies — killed by the OOM killer, or crashed — is replaced, after a backoff that
grows while replacements keep dying young (0.5 s, doubling to 30 s) and resets once one
lives a minute. Each replacement is logged (`worker_replaced`, with the dead worker's exit
code) and counted: a worker is told how many replacements happened before it started, and
shows it in `/readyz` and `/metrics`. SIGTERM/SIGINT stop every worker (the server exits when
they have); SIGHUP reloads every worker's policy.

With a SQLite ledger the supervisor also runs the node's ledger writer (router/ledger/
node.py), started before the workers, replaced like them (`ledger_writer_replaced`), and
stopped after them, so their last records reach it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Literal

from structlog.typing import FilteringBoundLogger

_FIRST_BACKOFF_S, _MAX_BACKOFF_S, _HEALTHY_AFTER_S = 0.5, 30.0, 60.0
_WRITER_READY_S = 10.0  # the writer's socket appears within this, or workers spool a moment
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes


def ledger_socket_path(spool_folder: Path) -> Path:
    """Where the node's ledger writer listens: beside the spools (only this user can
    connect), or in a private temporary folder when that path is too long for a socket."""
    path = spool_folder.resolve() / "ledger-writer.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    return Path(tempfile.mkdtemp(prefix="cascade-ledger-")) / "writer.sock"


@dataclass(slots=True)
class _Slot:
    process: Any  # multiprocessing.Process (spawn context)
    started: float = field(default_factory=time.monotonic)
    backoff: float = _FIRST_BACKOFF_S


class Supervisor:
    """Starts, watches and replaces the workers; `run` returns when they are stopped."""

    def __init__(
        self,
        target: Callable[[int], None],
        count: int,
        logger: FilteringBoundLogger,
        *,
        writer: tuple[Callable[[], None], Path] | None = None,
        start_method: Literal["spawn", "fork"] = "spawn",
    ) -> None:
        self._context = (
            multiprocessing.get_context("fork")
            if start_method == "fork"
            else multiprocessing.get_context("spawn")
        )
        self._target = target  # called in the worker with the replacements so far
        self._count = count
        self._log = logger
        self._slots: list[_Slot] = []
        self._writer_target = writer  # the ledger writer, and the socket it listens on
        self._writer: _Slot | None = None
        self._stopping = False
        self.replaced = 0

    def _spawn(self, backoff: float = _FIRST_BACKOFF_S) -> _Slot:
        process = self._context.Process(target=self._target, args=(self.replaced,))
        process.start()
        return _Slot(process, backoff=backoff)

    def _spawn_writer(self, backoff: float = _FIRST_BACKOFF_S) -> _Slot:
        assert self._writer_target is not None
        target, path = self._writer_target
        process = self._context.Process(target=target, name="ledger-writer")
        process.start()
        deadline = time.monotonic() + _WRITER_READY_S
        while not path.exists() and process.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        return _Slot(process, backoff=backoff)

    def stop(self, signum: int = signal.SIGTERM, _: object = None) -> None:
        """Stop the workers (the writer once they have: `run`)."""
        self._stopping = True
        for slot in self._slots:
            if slot.process.is_alive():
                slot.process.terminate()

    def reload(self, signum: int = signal.SIGHUP, _: object = None) -> None:
        for slot in self._slots:
            if slot.process.pid is not None and slot.process.is_alive():
                os.kill(slot.process.pid, signal.SIGHUP)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGHUP, self.reload)  # `kill -HUP <parent>` reloads every worker
        if self._writer_target is not None:
            self._writer = self._spawn_writer()
        self._slots = [self._spawn() for _ in range(self._count)]
        while True:
            alive = [s for s in self._slots if s.process.is_alive()]
            if self._stopping and not alive:
                self._stop_writer()
                return 0  # stopped as asked
            watched = alive + ([self._writer] if self._writer is not None else [])
            wait([s.process.sentinel for s in watched], timeout=1.0)
            if self._stopping:
                continue
            if self._writer is not None and not self._writer.process.is_alive():
                self._writer = self._replace(self._writer, "ledger_writer_replaced")
            for index, slot in enumerate(self._slots):
                if slot.process.is_alive():
                    continue
                self.replaced += 1
                self._slots[index] = self._replace(slot, "worker_replaced")

    def _stop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None and writer.process.is_alive():
            writer.process.terminate()
            writer.process.join(timeout=30)

    def _replace(self, dead: _Slot, event: str) -> _Slot:
        lived = time.monotonic() - dead.started
        backoff = _FIRST_BACKOFF_S if lived >= _HEALTHY_AFTER_S else dead.backoff
        self._log.warning(
            event,
            pid=dead.process.pid,
            exitcode=dead.process.exitcode,
            lived_s=round(lived, 1),
            backoff_s=backoff,
            replaced=self.replaced,
        )
        deadline = time.monotonic() + backoff
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, backoff))
        if self._stopping:
            return dead
        if event == "ledger_writer_replaced":
            return self._spawn_writer(min(backoff * 2, _MAX_BACKOFF_S))
        return self._spawn(min(backoff * 2, _MAX_BACKOFF_S))
