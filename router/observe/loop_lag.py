"""How long the event loop is held: every request waits while one step runs on it.

A probe sleeps `interval` seconds and measures how much later than that it woke; the delay
goes to `cascade_event_loop_lag_seconds` (a histogram), and a delay over the settings'
`loop_lag_warn_s` is logged (`event_loop_held`, with the delay and the tasks alive then),
so a request whose work grows with what a client sent shows up before it becomes an outage.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, Histogram
from structlog.typing import FilteringBoundLogger

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class LoopLag:
    def __init__(
        self, registry: CollectorRegistry, logger: FilteringBoundLogger, warn_s: float
    ) -> None:
        self._logger = logger
        self._warn_s = warn_s
        self.lag = Histogram(
            "cascade_event_loop_lag_seconds",
            "How much later than asked the event loop ran a 100 ms timer (time held by other work)",
            buckets=_BUCKETS,
            registry=registry,
        )

    def observe(self, lag: float) -> None:
        self.lag.observe(lag)
        if lag > self._warn_s:
            self._logger.warning(
                "event_loop_held", lag_ms=round(lag * 1000, 1), tasks=len(asyncio.all_tasks())
            )

    async def run(self, interval: float = 0.1) -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(interval)
            self.observe(max(time.perf_counter() - asked - interval, 0.0))
