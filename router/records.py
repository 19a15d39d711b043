"""Decision records: one per request, every attempt in it (GUIDE §2), written as JSONL.

The record is built while the request runs and finished once; sinks only serialise it.
The durable ledger (SQLite / Redis) reads the same `as_dict()`.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import orjson
import structlog

from router.policy.model import Policy

AttemptOutcome = Literal["accepted", "escalated", "error", "timeout", "shed", "degraded"]
Status = Literal["ok", "degraded", "error", "invalid"]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


@dataclass(slots=True)
class Attempt:
    tier: str
    backend: str
    model: str
    started_at: str
    latency_ms: float
    ttft_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    confidence: dict[str, object] | None = None
    outcome: AttemptOutcome = "accepted"
    error: str | None = None


@dataclass(slots=True)
class DecisionRecord:
    request_id: str
    endpoint: str
    policy_version: str
    ts: str = field(default_factory=lambda: _iso(time.time()))
    team: str = "default"
    key_id: str | None = None
    user: str | None = None
    tags: list[str] = field(default_factory=list)
    stream: bool = False
    requested_model: str | None = None
    route: str | None = None
    rule: str | None = None
    classifier: dict[str, object] | None = None
    attempts: list[Attempt] = field(default_factory=list)
    final_tier: str | None = None
    final_model: str | None = None
    status: Status = "ok"
    http_status: int = 200
    error: str | None = None
    cost_usd: float = 0.0
    counterfactual_cost_usd: float = 0.0
    saved_usd: float = 0.0
    cache_hit: bool = False

    def add_attempt(
        self, tier: str, backend: str, model: str, started: float, **values: Any
    ) -> Attempt:
        """Record an attempt that began at `started` (perf_counter) and ended now."""
        now = time.perf_counter()
        if values.get("ttft_ms") is not None:
            values["ttft_ms"] = round(values["ttft_ms"], 3)
        attempt = Attempt(
            tier=tier,
            backend=backend,
            model=model,
            started_at=_iso(time.time() - (now - started)),
            latency_ms=round((now - started) * 1000, 3),
            **values,
        )
        self.attempts.append(attempt)
        return attempt

    def finish(self, policy: Policy, reference_tier: str | None) -> None:
        """Price every attempt, then the counterfactual on the reference tier."""
        for attempt in self.attempts:
            spec = policy.tiers.get(attempt.tier)
            if spec is not None:
                attempt.cost_usd = round(
                    spec.price.cost(attempt.prompt_tokens, attempt.completion_tokens), 10
                )
        self.cost_usd = round(sum(a.cost_usd for a in self.attempts), 10)
        served = next(
            (a for a in reversed(self.attempts) if a.outcome in ("accepted", "degraded")), None
        )
        reference = policy.tiers.get(reference_tier) if reference_tier else None
        if served is not None and reference is not None:
            self.counterfactual_cost_usd = round(
                reference.price.cost(served.prompt_tokens, served.completion_tokens), 10
            )
            self.saved_usd = round(self.counterfactual_cost_usd - self.cost_usd, 10)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RecordSink:
    """Append-only JSONL file of decision records, one line each, via structlog."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._log = structlog.wrap_logger(
            structlog.WriteLogger(self._file),
            processors=[self._render],
        )

    @staticmethod
    def _render(_: Any, __: str, event: MutableMapping[str, Any]) -> str:
        record = event.pop("record")
        # orjson escapes control characters, so a record is always exactly one line.
        return orjson.dumps(record).decode()

    def write(self, record: DecisionRecord) -> None:
        self._log.msg("decision", record=record.as_dict())

    def close(self) -> None:
        self._file.close()
