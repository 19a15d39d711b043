"""Decision records: one per request, every attempt in it (GUIDE §2), written as JSONL.

The record is built while the request runs and finished once; sinks only serialise it.
The durable ledger (SQLite / Redis) serialises the same dataclass.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import orjson
import structlog

from router.policy.model import Policy

AttemptOutcome = Literal["accepted", "escalated", "error", "timeout", "shed", "degraded"]
Status = Literal["ok", "degraded", "error", "invalid"]


def iso_time(epoch: float) -> str:
    """UTC ISO-8601 with milliseconds (e.g. 2026-11-23T10:10:45.495Z)."""
    seconds = int(epoch)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{int((epoch - seconds) * 1000):03d}Z"


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
    ts: str = field(default_factory=lambda: iso_time(time.time()))
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
            started_at=iso_time(time.time() - (now - started)),
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


class _Pending:
    """What structlog writes to: rendered lines wait here for the next flush."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def write(self, line: bytes) -> None:
        self.lines.append(line)

    def flush(self) -> None:
        """structlog flushes after every line; the sink flushes in batches instead."""


class RecordSink:
    """Append-only JSONL file of decision records, one line each, via structlog.

    Writing is off the request path: lines collect in memory and `run()` appends them to
    the file every `flush_interval` seconds (and `close()` writes the rest), so a request
    pays for serialising its record, not for a write and flush syscall. A crash loses at
    most one interval of records; the durable ledger (spool + fsync) is a separate sink.
    """

    def __init__(self, path: Path, flush_interval: float = 0.02) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = path.open("ab")
        self._pending = _Pending()
        self._interval = flush_interval
        self._log = structlog.wrap_logger(
            structlog.BytesLogger(self._pending),  # type: ignore[arg-type]
            processors=[self._render],
            cache_logger_on_first_use=True,
        )

    @staticmethod
    def _render(_: Any, __: str, event: MutableMapping[str, Any]) -> bytes:
        # orjson serialises the dataclasses directly (no asdict copy) and escapes control
        # characters, so a record is always exactly one line.
        return orjson.dumps(event["record"])

    def write(self, record: DecisionRecord) -> None:
        self._log.msg("decision", record=record)

    def flush(self) -> None:
        if self._pending.lines:
            lines, self._pending.lines = self._pending.lines, []
            self._file.write(b"".join(lines))
            self._file.flush()

    async def run(self) -> None:
        """Flush forever (cancelled at shutdown, after which `close()` writes the rest)."""
        while True:
            await asyncio.sleep(self._interval)
            self.flush()

    def close(self) -> None:
        self.flush()
        self._file.close()
