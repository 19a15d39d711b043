"""Decision records: one per request, every attempt in it (GUIDE §2).

The handler builds the record from the routing Decision and the cascade's Outcome (the
executor never touches it) and finishes it once; the ledger (router/ledger/) serialises the
dataclass as it is (orjson) into whichever sink is configured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from router.backends.base import UsageSource
from router.backends.spec import PriceSpec
from router.policy.model import Policy

AttemptOutcome = Literal[
    "accepted", "escalated", "error", "timeout", "shed", "degraded", "client_gone", "skipped"
]
# What the client got: an answer (ok, degraded), a 4xx (invalid), a 429 for its team's or
# key's rate or budget (refused), a 5xx or an error event (error), a stream cut off by its
# upstream (or silent past its idle limit) after it began (upstream_truncated), or nothing,
# because it left first (client_gone).
Status = Literal[
    "ok", "degraded", "error", "invalid", "refused", "client_gone", "upstream_truncated"
]


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
    cached_tokens: int = 0  # of prompt_tokens, from the provider's cache (its cached price)
    reasoning_tokens: int = 0  # of completion_tokens (billed as output)
    cost_usd: float = 0.0
    confidence: dict[str, object] | None = None
    outcome: AttemptOutcome = "accepted"
    error: str | None = None
    local: bool = False  # the tier runs in the gateway's process (cost is compute, not a bill)
    retries: int = 0  # calls to the tier retried within this attempt (before its first byte)
    breaker: str | None = None  # the tier's circuit breaker when not closed: open, half_open
    # structured output (response_format): "valid", or "invalid: <why>" (never accepted)
    output_check: str | None = None
    # where the token counts come from: the provider's usage (reported), the gateway's own
    # count (counted: a local tokenizer, or nothing generated), or an estimate (estimated:
    # an answer cut off, left by its client or sent without usage; router/usage.py)
    usage_source: UsageSource = "counted"
    upstream_id: str | None = None  # the provider's id of its answer (usage exports name it)
    queued_ms: float = 0.0  # waited for a slot of the tier (shared fairly among teams)
    # a tier that continued another's stream after it broke: how, after how many characters
    # of the answer, and which tier's stream (router/repair.py)
    repair: dict[str, object] | None = None


def ended(tier: str, backend: str, model: str, started: float, **values: Any) -> Attempt:
    """An attempt that began at `started` (perf_counter) and ended now."""
    now = time.perf_counter()
    if values.get("ttft_ms") is not None:
        values["ttft_ms"] = round(values["ttft_ms"], 3)
    return Attempt(
        tier=tier,
        backend=backend,
        model=model,
        started_at=iso_time(time.time() - (now - started)),
        latency_ms=round((now - started) * 1000, 3),
        **values,
    )


def owner_line(
    team: str, route: str | None, final_tier: str | None, served: dict[str, Any] | None
) -> str:
    """A request's owner as the feedback index and a Redis ledger keep it: `team<TAB>route
    <TAB>final tier<TAB>1 when an in-process tier answered<TAB>that answer's acceptance value`
    (empty unless it was kept by its acceptance: what autotune weighs feedback at). `served`:
    the attempt the client got, as its record holds it."""
    local = bool(served and served.get("local"))
    value = None
    if local and served is not None and served.get("outcome") == "accepted":
        value = (served.get("confidence") or {}).get("value")
    shown = f"{value:.6f}" if isinstance(value, int | float) else ""
    return f"{team}\t{route or ''}\t{final_tier or ''}\t{'1' if local else '0'}\t{shown}"


SERVED = ("accepted", "degraded")  # outcomes of an attempt whose answer the client got


def served_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """DecisionRecord.served of a record as the ledger holds it (JSON)."""
    attempts = record.get("attempts") or ()
    return next((a for a in reversed(attempts) if a.get("outcome") in SERVED), None)


def call_cost(
    price: PriceSpec, prompt_tokens: int, completion_tokens: int, latency_ms: float, cached: int
) -> float:
    """What one call to a tier is recorded at: its price's cost, to 10 decimal places (an
    attempt's, and a shadow check's reference call)."""
    return round(
        price.cost(prompt_tokens, completion_tokens, latency_ms / 1000, cached_tokens=cached), 10
    )


def price(policy: Policy, attempts: list[Attempt]) -> float:
    """Each attempt's cost at its tier's price (set on it), and their sum: what a request
    cost (DecisionRecord.finish; `cascade policy simulate` prices replayed attempts so)."""
    for attempt in attempts:
        spec = policy.tiers.get(attempt.tier)
        if spec is not None:
            attempt.cost_usd = call_cost(
                spec.price,
                attempt.prompt_tokens,
                attempt.completion_tokens,
                attempt.latency_ms,
                attempt.cached_tokens,
            )
    return round(sum(a.cost_usd for a in attempts), 10)


@dataclass(slots=True)
class DecisionRecord:
    request_id: str  # the gateway's own, unpredictable: the ledger's key
    endpoint: str
    policy_version: str
    ts: str = field(default_factory=lambda: iso_time(time.time()))
    client_request_id: str | None = None  # the client's id, sanitised (never the key)
    team: str = "default"
    key_id: str | None = None
    user: str | None = None
    tags: list[str] = field(default_factory=list)
    stream: bool = False
    requested_model: str | None = None
    route: str | None = None
    rule: str | None = None
    classifier: dict[str, object] | None = None
    # every classifier's score (name@version) when more than `classifier` scored the prompt:
    # what `cascade policy simulate` replays rules on
    scores: dict[str, float] | None = None
    # the request features it used (tools, image, json_schema, ...): which tiers could serve it
    features: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    final_tier: str | None = None
    final_model: str | None = None
    status: Status = "ok"
    http_status: int = 200
    error: str | None = None
    latency_ms: float = 0.0  # the whole request, as the gateway saw it
    cost_usd: float = 0.0
    counterfactual_cost_usd: float = 0.0
    saved_usd: float = 0.0
    cache_hit: bool = False  # answered from the response cache (no attempts, cost 0)
    reason: str | None = None  # why it went where it did (x-cascade-reason's vocabulary)
    # the response cache for this request: hit, miss, bypass (the client's Cache-Control),
    # skip (not deterministic), error (its store did not answer); None: route not cached
    cache: str | None = None
    cache_saved_usd: float = 0.0  # on a hit: what the cached answer cost when it was made
    # the team's budget standing and what it did to the route (router/budgets/limiter.py)
    budget: dict[str, object] | None = None
    # the most tokens it could use, [prompt, output] (prompt counted or bounded, max_tokens of
    # every choice): what budgets reserved for it on each tier its plan may call
    bound_tokens: list[int] | None = None
    prompt: str | None = None  # only when the policy's ledger.log_prompts is on
    prompt_truncated: bool = False

    def served(self) -> Attempt | None:
        """The attempt whose answer the client got (the last accepted or degraded one)."""
        return next((a for a in reversed(self.attempts) if a.outcome in SERVED), None)

    def owner(self) -> str:
        """Who asked and what answered, for `POST /v1/feedback` to check and keep."""
        served = self.served()
        found = None
        if served is not None:
            found = {
                "local": served.local,
                "outcome": served.outcome,
                "confidence": served.confidence,
            }
        return owner_line(self.team, self.route, self.final_tier, found)

    def finish(self, policy: Policy, reference_tier: str | None) -> None:
        """Price every attempt, then the counterfactual on the reference tier.

        The counterfactual is what the served answer's prompt and completion tokens (and, for
        a tier priced by time, its latency) would have cost on `reference_tier`. A degraded
        answer (served because no tier after it answered) saved nothing: its counterfactual
        is what it cost.
        """
        self.cost_usd = price(policy, self.attempts)
        served = self.served()
        reference = policy.tiers.get(reference_tier) if reference_tier else None
        if served is not None and served.outcome == "degraded":
            # the escalation failed: nothing was saved by not asking the reference tier
            self.counterfactual_cost_usd, self.saved_usd = self.cost_usd, 0.0
            return
        if served is not None and reference is not None:
            self.counterfactual_cost_usd = round(
                reference.price.cost(
                    served.prompt_tokens,
                    served.completion_tokens,
                    served.latency_ms / 1000,
                    cached_tokens=served.cached_tokens,  # as if its cache had served as well
                ),
                10,
            )
            self.saved_usd = round(self.counterfactual_cost_usd - self.cost_usd, 10)
