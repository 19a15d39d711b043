"""`cascade serve --workers N`: N worker processes sharing the port, supervised.

A worker that dies — killed by the OOM killer, or crashed — is replaced, after a backoff that
grows while replacements keep dying young (0.5 s, doubling to 30 s) and resets once one
lives a minute. Each replacement is logged (`worker_replaced`, with the dead worker's exit
code) and counted: a worker is told how many replacements happened before it started, and
shows it in `/readyz` and `/metrics`. SIGTERM/SIGINT stop every worker (the server exits when
they have); SIGHUP reloads every worker's policy.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

from structlog.typing import FilteringBoundLogger

_FIRST_BACKOFF_S, _MAX_BACKOFF_S, _HEALTHY_AFTER_S = 0.5, 30.0, 60.0


@dataclass(slots=True)
class _Slot:
    process: Any  # multiprocessing.Process (spawn context)
    started: float = field(default_factory=time.monotonic)
    backoff: float = _FIRST_BACKOFF_S


class Supervisor:
    """Starts, watches and replaces the workers; `run` returns when they are stopped."""

    def __init__(
        self, target: Callable[[int], None], count: int, logger: FilteringBoundLogger
    ) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._target = target  # called in the worker with the replacements so far
        self._count = count
        self._log = logger
        self._slots: list[_Slot] = []
        self._stopping = False
        self.replaced = 0

    def _spawn(self, backoff: float = _FIRST_BACKOFF_S) -> _Slot:
        process = self._context.Process(target=self._target, args=(self.replaced,))
        process.start()
        return _Slot(process, backoff=backoff)

    def stop(self, signum: int = signal.SIGTERM, _: object = None) -> None:
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
        self._slots = [self._spawn() for _ in range(self._count)]
        while True:
            alive = [s for s in self._slots if s.process.is_alive()]
            if self._stopping and not alive:
                return 0  # stopped as asked
            wait([s.process.sentinel for s in alive], timeout=1.0)
            if self._stopping:
                continue
            for index, slot in enumerate(self._slots):
                if slot.process.is_alive():
                    continue
                self._slots[index] = self._replace(slot)

    def _replace(self, dead: _Slot) -> _Slot:
        lived = time.monotonic() - dead.started
        backoff = _FIRST_BACKOFF_S if lived >= _HEALTHY_AFTER_S else dead.backoff
        self.replaced += 1
        self._log.warning(
            "worker_replaced",
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
        return self._spawn(min(backoff * 2, _MAX_BACKOFF_S))
