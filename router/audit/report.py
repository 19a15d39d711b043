"""The report as data (what `--format json` prints and every other format renders)."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from router.audit.aggregate import Aggregator, FeedbackFigures, Group, ShadowFigures, Verdicts
from router.audit.sketch import UnitHistogram, psi
from router.ledger import Reader
from router.records import iso_time

_DAY_BUCKETS_ABOVE_HOURS = 72  # a series longer than this is shown by day


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _quantiles(group_or_hist: Any) -> dict[str, float | None]:
    return {
        f"p{q}": (None if (v := group_or_hist.quantile(q / 100)) is None else round(v, 3))
        for q in (50, 95, 99)
    }


_Z95 = 1.959964


def wilson(agree: int, checks: int) -> tuple[float, float] | None:
    """The 95% Wilson score interval of a proportion (sound at small counts and near 0 or 1)."""
    if not checks:
        return None
    p = agree / checks
    denominator = 1 + _Z95**2 / checks
    centre = (p + _Z95**2 / (2 * checks)) / denominator
    half = _Z95 * math.sqrt(p * (1 - p) / checks + _Z95**2 / (4 * checks**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def share_of(good: int, judged: int) -> dict[str, Any]:
    """`good` of `judged` as an estimate and its 95% Wilson interval (None when none judged)."""
    interval = wilson(good, judged)
    return {
        "estimate": round(good / judged, 4) if judged else None,
        "interval_95": None if interval is None else [round(v, 4) for v in interval],
    }


def _agreement(verdicts: Verdicts | None) -> dict[str, Any] | None:
    if verdicts is None:
        return None
    judged = verdicts.agree + verdicts.disagree
    return {
        "checks": judged,
        "agree": verdicts.agree,
        "inconclusive": verdicts.inconclusive,
        "errors": verdicts.errors,
        **share_of(verdicts.agree, judged),
    }


def local_quality(checks: ShadowFigures) -> dict[str, Any] | None:
    """Estimated accuracy of the local answers served: agreement of accepted local answers
    with the reference tier over conclusive shadow checks, its 95% interval, and whether it
    is below the route's target (the lowest the checks carried, when a group spans routes);
    beside it, how often rejected answers (`escalated`) and pre-router skips (`skipped`)
    would have agreed too."""
    if not checks.by_outcome:
        return None
    served = _agreement(checks.by_outcome.get("accepted")) or _agreement(Verdicts())
    assert served is not None
    target = min(checks.targets) if checks.targets else None
    estimate = served["estimate"]
    return {
        **served,
        "target": target,
        "below_target": None if estimate is None or target is None else estimate < target,
        "escalated": _agreement(checks.by_outcome.get("escalated")),
        "skipped": _agreement(checks.by_outcome.get("skipped")),
        "cost_usd": round(checks.cost, 8),
    }


def feedback_figures(found: FeedbackFigures) -> dict[str, Any] | None:
    """What applications said: counts, and the share good among good and bad (with its 95%
    interval), of all answers and of those an in-process tier served."""
    if not found.verdicts:
        return None

    def share(counts: Counter[str]) -> dict[str, Any]:
        return {
            "good": counts["good"],
            "bad": counts["bad"],
            "neither": counts["neither"],
            **share_of(counts["good"], counts["good"] + counts["bad"]),
        }

    items = sum(found.verdicts.values())
    return {"items": items, **share(found.verdicts), "local": share(found.local)}


def _combined(checks: ShadowFigures, found: FeedbackFigures) -> dict[str, Any] | None:
    """Served local answers judged good by either evidence: shadow checks that agreed and
    feedback that said good, over both's conclusive verdicts (an answer both judged counts
    twice: they are separate evidence)."""
    accepted = checks.by_outcome.get("accepted")
    agree = (accepted.agree if accepted else 0) + found.local["good"]
    judged = agree + (accepted.disagree if accepted else 0) + found.local["bad"]
    if not judged:
        return None
    return {"judged": judged, **share_of(agree, judged)}


def figures(group: Group) -> dict[str, Any]:
    saved = group.counterfactual - group.cost
    return {
        "requests": group.requests,
        "prompt_tokens": group.prompt_tokens,
        "completion_tokens": group.completion_tokens,
        "cost_usd": round(group.cost, 8),
        # how much of the cost is the provider's word, the gateway's count, or an estimate
        # (answers cut off, left by their client, or sent without usage)
        "cost_by_usage_source": {k: round(v, 8) for k, v in sorted(group.by_source.items())},
        "estimated_usd": round(group.by_source["estimated"], 8),
        "counterfactual_cost_usd": round(group.counterfactual, 8),
        "saved_usd": round(saved, 8),
        "saved_pct": round(100 * saved / group.counterfactual, 2) if group.counterfactual else None,
        "escalation_rate": _rate(group.escalated, group.requests),
        "local_acceptance_rate": _rate(group.local_accepted, group.local_answered),
        "degraded": group.degraded,
        "errors": group.errors,
        "invalid": group.invalid,
        "client_gone": group.gone,
        # refused for the team's rate or budget, or because every tier was saturated
        "refused": sum(group.refused.values()),
        "refused_by_reason": dict(sorted(group.refused.items())),
        "shed": group.shed,
        "budget_decisions": dict(group.budget),
        "cache_hits": group.cache_hits,
        "cache_hit_rate": _rate(group.cache_hits, group.cache_reads),
        "cache_saved_usd": round(group.cache_saved, 8),
        "local_quality": local_quality(group.checks),
        "feedback": feedback_figures(group.feedback),
        "local_quality_combined": _combined(group.checks, group.feedback),
        "latency_ms": _quantiles(group.latency),
    }


def _headline(team: str, group: Group) -> dict[str, Any]:
    """What a manager asks of one team: spent, saved against always-large (and how that is
    reckoned), refused, what its shadow checks cost, how good its local answers were."""
    found = figures(group)
    return {
        "team": team,
        "requests": found["requests"],
        "spent_usd": found["cost_usd"],
        "estimated_usd": found["estimated_usd"],
        "always_large_usd": found["counterfactual_cost_usd"],
        "saved_usd": found["saved_usd"],
        "saved_pct": found["saved_pct"],
        "refused": found["refused"],
        "refused_by_reason": found["refused_by_reason"],
        "shadow_spend_usd": round(group.checks.cost, 8),
        "local_quality": found["local_quality"],
        "feedback": found["feedback"],
    }


def _series(aggregator: Aggregator) -> dict[str, Any]:
    hours = sorted(aggregator.hours)
    by_day = len(hours) > _DAY_BUCKETS_ABOVE_HOURS
    points: dict[str, dict[str, Any]] = {}
    for hour in hours:
        bucket = aggregator.hours[hour]
        label = hour[:10] if by_day else hour + ":00"
        point = points.setdefault(
            label,
            {
                "t": label,
                "requests": 0,
                "escalated": 0,
                "cost_usd": 0.0,
                "counterfactual_cost_usd": 0.0,
                "always_small_usd": 0.0,
                "cost_by_team": {},
                "tiers": {},
            },
        )
        point["requests"] += bucket.requests
        point["escalated"] += bucket.escalated
        point["cost_usd"] += bucket.cost
        point["counterfactual_cost_usd"] += bucket.counterfactual
        point["always_small_usd"] += bucket.always_small
        for team, cost in bucket.cost_by_team.items():
            point["cost_by_team"][team] = point["cost_by_team"].get(team, 0.0) + cost
        for tier, count in bucket.tiers.items():
            point["tiers"][tier] = point["tiers"].get(tier, 0) + count
    for point in points.values():
        point["escalation_rate"] = _rate(point.pop("escalated"), point["requests"])
    return {"bucket": "day" if by_day else "hour", "points": list(points.values())}


def build_report(
    reader: Reader,
    *,
    by: Sequence[str],
    since: str | None,
    until: str | None,
    source: str,
) -> dict[str, Any]:
    """Aggregate `since <= ts < until` in one pass (and, with `since`, the classifier scores
    of the window of equal length before it, for drift)."""
    aggregator = Aggregator(by)
    loads = orjson.loads
    for body in reader.records(since, until):
        aggregator.add(loads(body))
    previous = UnitHistogram(10)
    if since is not None:
        end = until or iso_time(time.time())
        start = iso_time(2 * _epoch(since) - _epoch(end))
        for body in reader.records(start, since):
            classifier = loads(body).get("classifier")
            if classifier and classifier.get("score") is not None:
                previous.add(classifier["score"])
    total = aggregator.total
    groups = sorted(aggregator.groups.items(), key=lambda item: -item[1].cost)
    return {
        "ledger": source,
        "since": since,
        "until": until,
        "first_record": aggregator.first_ts,
        "last_record": aggregator.last_ts,
        "by": list(aggregator.by),
        "totals": figures(total),
        "groups": [
            {"key": dict(zip(aggregator.by, key, strict=True)), **figures(group)}
            for key, group in groups
        ],
        "headline": [
            _headline(team, group)
            for team, group in sorted(aggregator.teams.items(), key=lambda i: -i[1].cost)
        ],
        "tiers": [
            {
                "tier": name,
                "attempts": sum(t.outcomes.values()),
                "outcomes": dict(t.outcomes),
                "skipped_for": dict(t.skips),
                "prompt_tokens": t.prompt_tokens,
                "completion_tokens": t.completion_tokens,
                "cost_usd": round(t.cost, 8),
                "latency_ms": _quantiles(t.latency),
                "ttft_ms": _quantiles(t.ttft),
                "confidence_histogram": t.confidence.counts,
            }
            for name, t in sorted(aggregator.tiers.items())
        ],
        "baselines": {
            "actual_usd": round(total.cost, 8),
            "always_small_usd": round(total.always_small, 8),
            "always_large_usd": round(total.counterfactual, 8),
        },
        "classifier": {
            "scored": aggregator.scores.total,
            "histogram": aggregator.scores.counts,
            "previous_window_histogram": previous.counts if since is not None else None,
            "psi": psi(previous.counts, aggregator.scores.counts) if since is not None else None,
        },
        "series": _series(aggregator),
        "threshold_changes": [_tune(record) for record in aggregator.tunes],
    }


_TUNE_FIELDS = (
    "ts",
    "route",
    "tier",
    "method",
    "threshold_from",
    "threshold_to",
    "policy_threshold",
    "wanted",
    "min_threshold",
    "max_threshold",
    "target_quality",
    "checks",
    "agreement",
    "estimated_quality",
    "escalated_share",
    "policy_version",
)


def _tune(record: dict[str, Any]) -> dict[str, Any]:
    """A threshold change (router/shadow/autotune.py) as the report shows it."""
    return {name: record.get(name) for name in _TUNE_FIELDS}


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
