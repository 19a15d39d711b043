"""Prometheus metrics on a registry owned by the application (no global registry)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from router.backends.base import REQUEST_FEATURES
from router.ledger.writer import LedgerStats
from router.records import Attempt, DecisionRecord

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_SCORE_BUCKETS = tuple(round(0.1 * step, 1) for step in range(1, 11))  # 0.1 .. 1.0
_RATE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)  # tokens per second
_FEATURES: frozenset[str] = REQUEST_FEATURES | {"embeddings"}  # a skip's reason


def _pss_bytes() -> int | None:
    """This process's proportional set size (its share of pages it shares, such as the
    mmap'd model with other workers); None where /proc does not tell."""
    try:
        with open("/proc/self/smaps_rollup", "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class _ProcessExtras(Collector):
    """PSS, read at scrape time (RSS and the rest: prometheus_client's ProcessCollector)."""

    def collect(self) -> Iterator[Metric]:
        if (pss := _pss_bytes()) is not None:
            yield GaugeMetricFamily(
                "cascade_process_pss_bytes", "Proportional set size of this process", pss
            )


class _LedgerCollector(Collector):
    """The ledger's queue, spool and delivery counts, read at scrape time."""

    def __init__(self) -> None:
        self.stats: LedgerStats | None = None

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        if stats is None:
            return
        yield GaugeMetricFamily(
            "cascade_ledger_queue_depth", "Records waiting for the ledger sink", stats.queue_depth
        )
        yield GaugeMetricFamily(
            "cascade_ledger_spool_bytes",
            "Bytes of records in the local spool, waiting for the sink",
            stats.spool_bytes,
        )
        yield GaugeMetricFamily(
            "cascade_ledger_sink_up", "1 when the ledger sink takes records", int(stats.available)
        )
        records = CounterMetricFamily(
            "cascade_ledger_records",
            "Records by what became of them (lost: not even spooled; logged with their ids)",
            labels=["result"],
        )
        for result in ("written", "spooled", "replayed", "lost", "corrupt"):
            records.add_metric([result], getattr(stats, result))
        yield records


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._ledger = _LedgerCollector()
        self.registry.register(self._ledger)
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, cpu, fds
        self.registry.register(_ProcessExtras())
        self.policy_info = Gauge(
            "cascade_policy_info",
            "1 for the policy version this process serves now",
            ["version"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "cascade_tier_in_flight",
            "Calls in progress per tier (answers being generated or streamed)",
            ["tier"],
            registry=self.registry,
        )
        self.attempt_latency = Histogram(
            "cascade_attempt_seconds",
            "Tier attempt latency (whole answer, or until a stream ended)",
            ["tier"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "cascade_attempt_ttft_seconds",
            "Time to a tier's first token",
            ["tier"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decode_rate = Histogram(
            "cascade_local_decode_tokens_per_second",
            "Local tiers' generation speed after the first token",
            ["tier"],
            buckets=_RATE_BUCKETS,
            registry=self.registry,
        )
        self.escalations = Counter(
            "cascade_escalations",
            "Answers rejected by a step's acceptance, by why: confidence or output_check",
            ["route", "tier", "reason"],
            registry=self.registry,
        )
        self.skips = Counter(
            "cascade_skips",
            "Tiers skipped for a request feature they do not serve (tools, n, ...)",
            ["tier", "reason"],
            registry=self.registry,
        )
        self.shadow_checks = Counter(
            "cascade_shadow_checks",
            "Shadow checks of accepted local answers by result: agree, disagree, "
            "inconclusive, error, or not run (dropped: queue full; capped: the day's spend; "
            "cap_unavailable: a shared cap's Redis; busy: the local tier had clients)",
            ["route", "result"],
            registry=self.registry,
        )
        self.acceptance_threshold = Gauge(
            "cascade_acceptance_threshold",
            "The acceptance threshold in force per route step: the policy's, or the one "
            "shadow.autotune set",
            ["route", "tier"],
            registry=self.registry,
        )
        self.team_cost = Counter(
            "cascade_team_cost_usd", "Spend by team (USD)", ["team"], registry=self.registry
        )
        self.team_saved = Counter(
            "cascade_team_saved_usd",
            "Saved by team against always using each route's reference tier (USD)",
            ["team"],
            registry=self.registry,
        )
        self.workers_replaced = Gauge(
            "cascade_workers_replaced",
            "Workers of this server that died and were replaced (as of this worker's start)",
            registry=self.registry,
        )
        self.budget_store_errors = Counter(
            "cascade_budget_store_errors",
            "Budget and rate-limit store calls that failed (Redis unreachable)",
            registry=self.registry,
        )
        self.cache_errors = Counter(
            "cascade_cache_errors",
            "Response cache store calls that failed (Redis unreachable or slow)",
            registry=self.registry,
        )
        self.cache_memory = Gauge(
            "cascade_cache_memory",
            "The in-process response cache now: its entries and their bytes",
            ["what"],
            registry=self.registry,
        )
        self.cache_lookups = Counter(
            "cascade_cache_lookups",
            "Requests on cached routes by result: hit, miss, bypass, skip, error",
            ["route", "result"],
            registry=self.registry,
        )
        self.cache_saved = Counter(
            "cascade_cache_saved_usd",
            "What answers served from the cache cost when they were made (USD), by team",
            ["team"],
            registry=self.registry,
        )
        self.auth_refusals = Counter(
            "cascade_auth_refusals",
            "Requests refused before any work: 401 (no valid key) or 403 (not allowed), by code",
            ["code"],
            registry=self.registry,
        )
        for code in ("invalid_api_key", "model_not_allowed", "admin_key_required"):
            self.auth_refusals.labels(code)
        self.requests = Counter(
            "cascade_requests",
            "Completion requests by route, answering tier and status",
            ["route", "tier", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cascade_request_seconds",
            "Completion request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.attempts = Counter(
            "cascade_attempts",
            "Tier attempts by outcome",
            ["tier", "outcome"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "cascade_tokens", "Tokens by tier and kind", ["tier", "kind"], registry=self.registry
        )
        self.cost = Counter(
            "cascade_cost_usd", "Spend by tier (USD)", ["tier"], registry=self.registry
        )
        self.policy_reloads = Counter(
            "cascade_policy_reloads",
            "Policy changes applied or rejected",
            ["result"],
            registry=self.registry,
        )
        for result in ("applied", "rejected"):  # known label values start at 0
            self.policy_reloads.labels(result)
        self.classifier_scores = Histogram(
            "cascade_classifier_score",
            "Pre-router scores (P(the first step suffices)) by route and classifier",
            ["route", "classifier"],
            buckets=_SCORE_BUCKETS,
            registry=self.registry,
        )
        self.classifier_skips = Counter(
            "cascade_classifier_skips",
            "Requests whose pre-router skipped the route's first step",
            ["route", "classifier"],
            registry=self.registry,
        )
        self.intake_paced = Counter(
            "cascade_intake_paced_seconds",
            "Time a team's requests waited before parsing: the team had used more than its "
            "share of the event loop (CASCADE_INTAKE_SHARE) while another team was asking",
            ["team"],
            registry=self.registry,
        )
        self.offloaded = Counter(
            "cascade_offloaded_bodies_total",
            "Large or dense bodies checked first in the worker process while another team was "
            "asking (CASCADE_OFFLOAD_BYTES, CASCADE_OFFLOAD_OBJECTS), by what the worker found",
            # refused, accepted; starting, worker_lost: checked on the loop instead
            ["outcome"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "cascade_tier_queue_depth",
            "Requests waiting for a tier",
            ["tier"],
            registry=self.registry,
        )
        self.tasks = Gauge(
            "cascade_asyncio_tasks",
            "Tasks alive in this process's event loop",
            registry=self.registry,
        )
        self.tier_state = Gauge(
            "cascade_tier_state",
            "1 for each tier's current state: ready, half_open or open (its circuit breaker)",
            ["tier", "state"],
            registry=self.registry,
        )

    def observe(self, record: DecisionRecord, seconds: float) -> None:
        route = record.route or "-"
        self.requests.labels(route, record.final_tier or "-", record.status).inc()
        self.latency.labels(route).observe(seconds)
        if record.cache is not None:
            self.cache_lookups.labels(route, record.cache).inc()
            if record.cache_saved_usd:
                self.cache_saved.labels(record.team).inc(record.cache_saved_usd)
        if (verdict := record.classifier) is not None:
            name = str(verdict["name"])
            self.classifier_scores.labels(route, name).observe(float(verdict["score"]))  # type: ignore[arg-type]
            if verdict["skipped_first_step"]:
                self.classifier_skips.labels(route, name).inc()
        if record.cost_usd:
            self.team_cost.labels(record.team).inc(record.cost_usd)
        if record.saved_usd > 0:
            self.team_saved.labels(record.team).inc(record.saved_usd)
        for attempt in record.attempts:
            self._attempt(route, attempt)

    def _attempt(self, route: str, attempt: Attempt) -> None:
        self.attempts.labels(attempt.tier, attempt.outcome).inc()
        if attempt.outcome == "skipped":  # once per feature the tier lacks (a bounded set)
            reasons = (attempt.error or "").removeprefix("skipped: ").split(", ")
            for reason in reasons:
                self.skips.labels(attempt.tier, reason if reason in _FEATURES else "-").inc()
            return
        if attempt.outcome == "escalated":
            invalid = (attempt.output_check or "").startswith("invalid")
            self.escalations.labels(
                route, attempt.tier, "output_check" if invalid else "confidence"
            ).inc()
        self.attempt_latency.labels(attempt.tier).observe(attempt.latency_ms / 1000)
        if attempt.ttft_ms is not None:
            self.ttft.labels(attempt.tier).observe(attempt.ttft_ms / 1000)
            decoding = (attempt.latency_ms - attempt.ttft_ms) / 1000
            if attempt.local and attempt.completion_tokens > 1 and decoding > 0:
                rate = (attempt.completion_tokens - 1) / decoding
                self.decode_rate.labels(attempt.tier).observe(rate)
        if attempt.prompt_tokens:
            self.tokens.labels(attempt.tier, "prompt").inc(attempt.prompt_tokens)
        if attempt.completion_tokens:
            self.tokens.labels(attempt.tier, "completion").inc(attempt.completion_tokens)
        if attempt.cost_usd:
            self.cost.labels(attempt.tier).inc(attempt.cost_usd)

    def render(
        self,
        queue_depths: Mapping[str, int],
        ledger: LedgerStats | None = None,
        tier_states: Mapping[str, str] | None = None,
        cache_memory: tuple[int, int] = (0, 0),
        *,
        policy_version: str | None = None,
        in_flight: Mapping[str, int] | None = None,
        thresholds: Mapping[tuple[str, str], float] | None = None,
    ) -> bytes:
        for tier, depth in queue_depths.items():
            self.queue_depth.labels(tier).set(depth)
        self.tasks.set(len(asyncio.all_tasks()))
        if policy_version is not None:
            self.policy_info.clear()
            self.policy_info.labels(policy_version).set(1)
        if thresholds is not None:
            self.acceptance_threshold.clear()  # steps a reload removed go away
            for (route, tier), value in thresholds.items():
                self.acceptance_threshold.labels(route, tier).set(value)
        for tier in queue_depths:
            self.in_flight.labels(tier).set((in_flight or {}).get(tier, 0))
        for tier, current in (tier_states or {}).items():
            for state in ("ready", "half_open", "open"):
                self.tier_state.labels(tier, state).set(1 if state == current else 0)
        self.cache_memory.labels("entries").set(cache_memory[0])
        self.cache_memory.labels("bytes").set(cache_memory[1])
        self._ledger.stats = ledger
        return generate_latest(self.registry)
