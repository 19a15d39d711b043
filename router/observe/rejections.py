"""Overload is cheap: requests refused because every tier is saturated, or for their team's
rate or budget, are counted and summarised once a second (per team, route and reason), not
written one full record and one log line each, unless the policy's `ledger.rejections` is
`full`. Each summary is also one ledger record per team (`kind: rejections`), so `cascade
audit` reports what each team was refused."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from structlog.typing import FilteringBoundLogger

from router.records import iso_time


@dataclass(slots=True)
class RejectionsRecord:
    """One second's refusals of one team, as the ledger keeps them (`kind: rejections`)."""

    team: str
    counts: list[dict[str, object]]  # {route, reason, count}
    request_id: str = field(default_factory=lambda: f"rejections-{secrets.token_hex(8)}")
    ts: str = field(default_factory=lambda: iso_time(time.time()))
    kind: str = "rejections"


class Rejections:
    def __init__(
        self,
        registry: CollectorRegistry,
        logger: FilteringBoundLogger,
        submit: Callable[[RejectionsRecord], None] = lambda _: None,
    ) -> None:
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._logger = logger
        self.submit = submit  # the ledger's, once it is open
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
        by_team: dict[str, list[dict[str, object]]] = {}
        for (team, route, reason), count in sorted(counts.items()):
            by_team.setdefault(team, []).append({"route": route, "reason": reason, "count": count})
        for team, found in by_team.items():
            self.submit(RejectionsRecord(team, found))
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
