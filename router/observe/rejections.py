"""Overload is cheap: requests refused because every tier is saturated are counted and
summarised once a second (per team, route and reason), not written one full record and one
log line each, unless the policy's `ledger.rejections` is `full`."""

from __future__ import annotations

import asyncio
from collections import Counter

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from structlog.typing import FilteringBoundLogger


class Rejections:
    def __init__(self, registry: CollectorRegistry, logger: FilteringBoundLogger) -> None:
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._logger = logger
        self._total = PromCounter(
            "cascade_rejected",
            "Requests refused without an answer, by team, route and reason",
            ["team", "route", "reason"],
            registry=registry,
        )

    def add(self, team: str, route: str, reason: str) -> None:
        self._counts[team, route, reason] += 1
        self._total.labels(team, route, reason).inc()

    def flush(self) -> None:
        """One log line for what was refused since the last flush."""
        if not self._counts:
            return
        counts, self._counts = self._counts, Counter()
        self._logger.warning(
            "rejected",
            total=sum(counts.values()),
            by=[
                {"team": team, "route": route, "reason": reason, "count": count}
                for (team, route, reason), count in sorted(counts.items())
            ],
        )

    async def run(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.flush()
