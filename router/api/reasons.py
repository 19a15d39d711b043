"""Why a request went where it did: the `x-cascade-reason` header (whole and streamed answers
and errors alike) and the record's `reason`. A short, stable vocabulary, `; `-separated, in
the order things happened:

    rule:NAME->ROUTE              a rule moved the request to ROUTE
    budget_degraded 85%           its team's budget standing shaped the plan (also
                                  budget_rerouted, budget_local_only)
    prerouter_skip:TIER 0.08<0.13 the pre-router skipped the route's first step
    cache_hit                     answered from the response cache
    skipped:TIER:tools,image      the tier does not serve a feature the request uses
    tier_unconfigured:TIER        the tier has no backend configured
    failed:TIER:timeout           the tier failed (error, timeout, shed, client_gone)
    low_confidence:TIER 0.24<0.30 its answer was judged below the step's threshold
    invalid_output:TIER           its answer failed the structured-output check
    accepted:TIER 0.91>=0.55      its answer was kept (the confidence, when judged)
    degraded:TIER                 its answer was served for want of a better one (said
                                  last; where it was judged, low_confidence:TIER first)
    repaired:TIER                 it continued another tier's broken stream
    live:TIER                     it is streaming its answer live (always kept)
"""

from __future__ import annotations

from collections.abc import Sequence

from router.records import Attempt
from router.routing import Decision

_MOST = 400  # characters of the header at most


def _judged(attempt: Attempt) -> str:
    found = attempt.confidence or {}
    value, threshold = found.get("value"), found.get("threshold")
    if not isinstance(value, int | float):
        return ""
    if isinstance(threshold, int | float) and threshold > 0:
        return f" {value:.2f}{'>=' if value >= threshold else '<'}{threshold:g}"
    return f" {value:.2f}"


def _attempt(attempt: Attempt) -> str:
    tier, outcome = attempt.tier, attempt.outcome
    error = attempt.error or ""
    if outcome == "skipped":
        said = f"skipped:{tier}:{error.removeprefix('skipped: ').replace(' ', '')}"
    elif outcome == "escalated" and attempt.output_check not in (None, "valid"):
        said = f"invalid_output:{tier}"
    elif outcome == "escalated":
        said = f"low_confidence:{tier}{_judged(attempt)}"
    elif outcome == "accepted":
        said = f"{'repaired' if attempt.repair else 'accepted'}:{tier}{_judged(attempt)}"
    elif "not configured" in error:
        said = f"tier_unconfigured:{tier}"
    else:
        said = f"failed:{tier}:{outcome}"
    return said


def reason(
    decision: Decision,
    attempts: Sequence[Attempt],
    *,
    live_tier: str | None = None,
    budget: str = "ok",
    budget_share: float | None = None,
    cache_hit: bool = False,
) -> str:
    """The header's value: ASCII, `; `-separated, at most 400 characters."""
    parts: list[str] = []
    if decision.rule is not None:
        parts.append(f"rule:{decision.rule}->{decision.route}")
    if budget != "ok":
        parts.append(f"budget_{budget}" + (f" {budget_share:.0%}" if budget_share else ""))
    verdict = decision.prerouter
    if verdict is not None and verdict.skip and decision.plan.steps:
        first = decision.plan.steps[0].tier
        parts.append(f"prerouter_skip:{first} {verdict.score:.2f}<{verdict.threshold:g}")
    if cache_hit:
        parts.append("cache_hit")
    served = []  # a degraded answer: said last, as what the client got
    for attempt in attempts:
        if attempt.outcome != "degraded":
            parts.append(_attempt(attempt))
            continue
        judged = _judged(attempt)
        if "<" in judged:  # where it was judged: why the cascade wanted better
            parts.append(f"low_confidence:{attempt.tier}{judged}")
        served.append(f"degraded:{attempt.tier}")
    parts += served
    if live_tier is not None:
        parts.append(f"live:{live_tier}")
    text = "; ".join(parts) or f"route:{decision.route}"
    text = text.encode("ascii", "backslashreplace").decode()
    return text if len(text) <= _MOST else text[: _MOST - 3] + "..."
