"""Figures of a simulation: what happened and what the candidate would do, per team and
route and in total, in bounded memory (sums, counters and log histograms, as the audit)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from router.audit.report import share_of
from router.audit.sketch import LogHistogram
from router.policy.model import Policy
from router.simulate.evidence import Evidence
from router.simulate.replay import Served
from router.simulate.tokens import TokenModel

_Z95 = 1.959964


class Side:
    """One column of the comparison: the recorded requests, or the same replayed."""

    __slots__ = (
        "agree",
        "bad",
        "budget",
        "cost",
        "disagree",
        "escalated",
        "estimated",
        "estimates",
        "good",
        "latency",
        "local",
        "requests",
        "statuses",
        "tiers",
    )

    def __init__(self) -> None:
        self.requests = self.local = self.escalated = 0
        self.cost = self.estimated = 0.0
        # calls estimated, by (recorded tier, tier never called): [calls, their recorded
        # prompt tokens, their recorded completion tokens]
        self.estimates: dict[tuple[str, str], list[int]] = {}
        self.tiers: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.budget: Counter[str] = Counter()
        self.latency = LogHistogram()  # where it is known
        self.agree = self.disagree = 0  # shadow checks of the local answers served
        self.good = self.bad = 0  # applications' feedback on the local answers served

    def add(self, served: Served, shadow: str | None, feedback: str | None) -> None:
        self.requests += 1
        self.tiers[served.final_tier or "-"] += 1
        self.statuses[served.status] += 1
        self.local += served.local
        self.escalated += served.escalated
        self.cost += served.cost_usd
        self.estimated += served.estimated_usd
        for source, target, prompt, completion in served.estimates:
            found = self.estimates.setdefault((source, target), [0, 0, 0])
            found[0] += 1
            found[1] += prompt
            found[2] += completion
        if served.budget is not None:
            self.budget[served.budget] += 1
        if served.latency_ms is not None:
            self.latency.add(served.latency_ms)
        if served.local and served.status == "ok":  # kept by its acceptance, as the audit's
            self.agree += shadow == "agree"
            self.disagree += shadow == "disagree"
            self.good += feedback == "good"
            self.bad += feedback == "bad"

    def merge(self, other: Side) -> None:
        for name in ("requests", "local", "escalated", "agree", "disagree", "good", "bad"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cost += other.cost
        self.estimated += other.estimated
        for key, (calls, prompt, completion) in other.estimates.items():
            found = self.estimates.setdefault(key, [0, 0, 0])
            found[0] += calls
            found[1] += prompt
            found[2] += completion
        self.tiers.update(other.tiers)
        self.statuses.update(other.statuses)
        self.budget.update(other.budget)
        self.latency.merge(other.latency)

    def figures(self, spread: Spread | None = None) -> dict[str, Any]:
        """The side's figures; with `spread` (the replayed side), the interval of its cost."""
        n = self.requests
        quantile = self.latency.quantile
        figures: dict[str, Any] = {
            "requests": n,
            "tiers": dict(self.tiers.most_common()),
            "local_share": round(self.local / n, 4) if n else None,
            "escalations": self.escalated,
            "escalation_rate": round(self.escalated / n, 4) if n else None,
            "cost_usd": round(self.cost, 8),
            "statuses": dict(self.statuses.most_common()),
            "budget": dict(self.budget.most_common()),
            "latency_ms": {
                "known": self.latency.count,
                "p50": _rounded(quantile(0.5)),
                "p95": _rounded(quantile(0.95)),
            },
            "quality": {
                "shadow": _share(self.agree, self.agree + self.disagree),
                "feedback": _share(self.good, self.good + self.bad),
                "combined": _share(
                    self.agree + self.good, self.agree + self.disagree + self.good + self.bad
                ),
            },
        }
        if spread is not None:
            figures["estimated_usd"] = round(self.estimated, 8)
            variance = spread.variance(self.estimates)
            figures["cost_interval_95"] = None
            if variance is not None:
                half = _Z95 * math.sqrt(variance)
                figures["cost_interval_95"] = [
                    round(max(self.cost - half, self.cost - self.estimated), 8),
                    round(self.cost + half, 8),
                ]
        return figures


class Spread:
    """The variance of what estimated calls cost: per pair of tiers, the token model's
    variance of a sum of estimates, priced at the tier never called."""

    def __init__(self, tokens: TokenModel, policy: Policy) -> None:
        self._tokens = tokens
        self._prices = {
            name: (spec.price.input_per_1m / 1e6, spec.price.output_per_1m / 1e6)
            for name, spec in policy.tiers.items()
        }

    def variance(self, estimates: dict[tuple[str, str], list[int]]) -> float | None:
        """None when some pair of tiers has too few calls in common to say."""
        total = 0.0
        for (source, target), (calls, prompt, completion) in estimates.items():
            per_prompt, per_completion = self._prices[target]
            lines = (self._tokens.line(source, target, kind) for kind in ("prompt", "completion"))
            prompt_line, completion_line = lines
            parts = (
                (per_prompt, prompt_line.sum_variance(calls, prompt)),
                (per_completion, completion_line.sum_variance(calls, completion)),
            )
            for price, found in parts:
                if found is None:
                    return None
                total += price * price * found
        return total


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _share(good: int, judged: int) -> dict[str, Any] | None:
    """The audit's estimate and interval (share_of), and how many were judged; None when
    none were."""
    return {**share_of(good, judged), "n": judged} if judged else None


class Tally:
    """Both sides by (team, route) and in total, and what could not be replayed."""

    def __init__(self) -> None:
        self.actual: dict[tuple[str, str], Side] = {}
        self.predicted: dict[tuple[str, str], Side] = {}
        self.not_replayed: Counter[str] = Counter()
        self.not_replayed_usd = 0.0
        self.carried = 0
        self.recorded_policies: Counter[str] = Counter()
        self.tiers_seen: set[str] = set()  # tiers some request called
        self.first_ts: str | None = None
        self.last_ts: str | None = None

    def seen(self, record: dict[str, Any]) -> None:
        ts = str(record["ts"])
        self.first_ts = ts if self.first_ts is None or ts < self.first_ts else self.first_ts
        self.last_ts = ts if self.last_ts is None or ts > self.last_ts else self.last_ts
        self.recorded_policies[str(record.get("policy_version"))] += 1
        for attempt in record.get("attempts") or ():
            self.tiers_seen.add(attempt["tier"])

    def skip(self, record: dict[str, Any], reason: str) -> None:
        self.not_replayed[reason] += 1
        self.not_replayed_usd += float(record.get("cost_usd") or 0.0)

    def add(self, evidence: Evidence, request_id: str, actual: Served, predicted: Served) -> None:
        check = evidence.checks.get(request_id)
        said = evidence.feedback.get(request_id)
        local_said = said if request_id in evidence.feedback_local else None
        # the recorded side's checks are of the answer it served; the replayed side's, of
        # the local tier's answer to this prompt however it was checked (kept, rejected or
        # asked for by the shadow runner alone)
        served_check = check.verdict if check and check.local_outcome == "accepted" else None
        any_check = check.verdict if check else None
        self.carried += predicted.carried
        for sides, served, shadow in (
            (self.actual, actual, served_check),
            (self.predicted, predicted, any_check),
        ):
            key = (served.team, served.route)
            side = sides.get(key)
            if side is None:
                side = sides[key] = Side()
            side.add(served, shadow, local_said)

    def merge(self, other: Tally) -> None:
        """Adds what another part of the same ledger tallied."""
        for mine, theirs in ((self.actual, other.actual), (self.predicted, other.predicted)):
            for key, side in theirs.items():
                found = mine.get(key)
                if found is None:
                    mine[key] = side
                else:
                    found.merge(side)
        self.not_replayed.update(other.not_replayed)
        self.not_replayed_usd += other.not_replayed_usd
        self.carried += other.carried
        self.recorded_policies.update(other.recorded_policies)
        self.tiers_seen |= other.tiers_seen
        for ts in (other.first_ts, other.last_ts):
            if ts is not None:
                self.first_ts = ts if self.first_ts is None or ts < self.first_ts else self.first_ts
                self.last_ts = ts if self.last_ts is None or ts > self.last_ts else self.last_ts

    @staticmethod
    def total(sides: dict[tuple[str, str], Side], team: str | None = None) -> Side:
        """All the groups' figures together (of one team's routes, with `team`)."""
        total = Side()
        for (owner, _), side in sides.items():
            if team is None or owner == team:
                total.merge(side)
        return total
