"""One pass over decision records into per-group figures, per-tier figures and a time series.

Memory depends on how many groups, tiers and hours there are, not on how many records:
every figure is a sum, a count, or a bounded histogram (sketch.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, TypeVar

from router.audit.sketch import LogHistogram, UnitHistogram

DIMENSIONS = ("team", "route", "tier", "model", "day")
ANSWERED = ("accepted", "escalated", "degraded")  # outcomes where the tier produced an answer

Record = dict[str, Any]


class Outcome:
    """What a request's attempts add up to."""

    __slots__ = (
        "by_source",
        "completion_tokens",
        "escalated",
        "first_cost",
        "local_accepted",
        "local_answered",
        "prompt_tokens",
        "shed",
    )

    def __init__(self, first_cost: float) -> None:
        self.first_cost = first_cost  # what the request would cost if the first tier kept it
        self.prompt_tokens = self.completion_tokens = 0
        self.escalated = self.shed = self.local_answered = self.local_accepted = False
        self.by_source: Counter[str] = Counter()  # cost by where its tokens came from


_ERRORS = frozenset({"error", "upstream_truncated"})  # what reached the client was an error
_CACHE_READS = frozenset({"hit", "miss", "error"})  # a cache status where it was looked in


class FeedbackFigures:
    """What applications said of the group's answers (POST /v1/feedback, `kind: feedback`):
    good, bad or neither, all answers and those an in-process tier served."""

    __slots__ = ("local", "verdicts")

    def __init__(self) -> None:
        self.verdicts: Counter[str] = Counter()
        self.local: Counter[str] = Counter()

    def add(self, record: Record) -> None:
        verdict = str(record.get("verdict") or "neither")
        self.verdicts[verdict] += 1
        if record.get("local"):
            self.local[verdict] += 1


class Group:
    """Figures of one group of requests."""

    __slots__ = (
        "always_small",
        "budget",
        "by_source",
        "cache_hits",
        "cache_reads",
        "cache_saved",
        "checks",
        "completion_tokens",
        "cost",
        "counterfactual",
        "degraded",
        "errors",
        "escalated",
        "feedback",
        "gone",
        "invalid",
        "latency",
        "local_accepted",
        "local_answered",
        "prompt_tokens",
        "refused",
        "requests",
        "shed",
    )

    def __init__(self) -> None:
        self.requests = self.prompt_tokens = self.completion_tokens = 0
        # refused for rate, budget or saturation: full records (status refused) and the
        # per-second summaries (kind rejections) alike, by reason
        self.refused: Counter[str] = Counter()
        self.cost = self.counterfactual = self.always_small = 0.0
        self.escalated = self.local_answered = self.local_accepted = 0
        self.degraded = self.errors = self.invalid = self.shed = self.gone = 0
        self.latency = LogHistogram()
        self.budget: Counter[str] = Counter()  # what a team's budget did to its requests
        self.cache_reads = self.cache_hits = 0  # requests that looked in the cache; found
        self.cache_saved = 0.0  # what the answers served from the cache cost when made
        self.checks = ShadowFigures()  # shadow checks of its accepted local answers
        self.feedback = FeedbackFigures()  # what applications said of its answers
        # cost by usage_source: reported by the provider, counted here, or estimated
        self.by_source: Counter[str] = Counter()

    def add(self, record: Record, outcome: Outcome) -> None:
        status = record["status"]
        budget = record.get("budget")  # records from before budgets have none
        if budget:
            self.budget[str(budget.get("decision"))] += 1
        self.requests += 1
        cache = record.get("cache")  # records from before the cache have none
        if cache in _CACHE_READS:
            self.cache_reads += 1
            if cache == "hit":
                self.cache_hits += 1
                self.cache_saved += record.get("cache_saved_usd") or 0.0
        self.prompt_tokens += outcome.prompt_tokens
        self.completion_tokens += outcome.completion_tokens
        self.cost += record["cost_usd"]
        self.by_source.update(outcome.by_source)
        self.counterfactual += record["counterfactual_cost_usd"]
        self.always_small += outcome.first_cost
        self.escalated += outcome.escalated
        self.shed += outcome.shed
        self.local_answered += outcome.local_answered
        self.local_accepted += outcome.local_accepted
        self.degraded += status == "degraded"
        self.errors += status in _ERRORS
        self.invalid += status == "invalid"
        self.gone += status == "client_gone"
        if status == "refused":  # a full record (ledger.rejections: full)
            self.refused["rate_or_budget"] += 1
        self.latency.add(record.get("latency_ms") or 0.0)


class TierFigures:
    __slots__ = (
        "completion_tokens",
        "confidence",
        "cost",
        "latency",
        "outcomes",
        "prompt_tokens",
        "skips",
        "ttft",
    )

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.skips: Counter[str] = Counter()  # skipped attempts by the feature it lacked
        self.prompt_tokens = self.completion_tokens = 0
        self.cost = 0.0
        self.latency = LogHistogram()
        self.ttft = LogHistogram()
        self.confidence = UnitHistogram(10)

    def add(self, attempt: Record, outcome: str) -> None:
        self.outcomes[outcome] += 1
        if outcome == "skipped":
            reasons = str(attempt.get("error") or "").removeprefix("skipped: ")
            self.skips.update(reason.strip() for reason in reasons.split(",") if reason.strip())
        self.prompt_tokens += attempt["prompt_tokens"]
        self.completion_tokens += attempt["completion_tokens"]
        self.cost += attempt["cost_usd"]
        self.latency.add(attempt["latency_ms"])
        if attempt.get("ttft_ms") is not None:
            self.ttft.add(attempt["ttft_ms"])
        confidence = attempt.get("confidence")
        if confidence and confidence.get("value") is not None:
            self.confidence.add(confidence["value"])


class Bucket:
    """One hour of the time series."""

    __slots__ = (
        "always_small",
        "cost",
        "cost_by_team",
        "counterfactual",
        "escalated",
        "requests",
        "tiers",
    )

    def __init__(self) -> None:
        self.requests = self.escalated = 0
        self.cost = self.counterfactual = self.always_small = 0.0
        self.cost_by_team: Counter[str] = Counter()
        self.tiers: Counter[str] = Counter()

    def add(self, record: Record, outcome: Outcome) -> None:
        self.requests += 1
        self.escalated += outcome.escalated
        self.cost += record["cost_usd"]
        self.counterfactual += record["counterfactual_cost_usd"]
        self.always_small += outcome.first_cost
        self.cost_by_team[record.get("team") or "-"] += record["cost_usd"]
        self.tiers[record.get("final_tier") or "-"] += 1


class Verdicts:
    """Shadow verdicts of one kind of check."""

    __slots__ = ("agree", "disagree", "errors", "inconclusive")

    def __init__(self) -> None:
        self.agree = self.disagree = self.inconclusive = self.errors = 0

    def add(self, verdict: object) -> None:
        if verdict == "agree":
            self.agree += 1
        elif verdict == "disagree":
            self.disagree += 1
        elif verdict == "inconclusive":
            self.inconclusive += 1
        else:
            self.errors += 1


class ShadowFigures:
    """Shadow checks (router/shadow/) by what the local tier's answer was: `accepted`
    (served: the local tier's quality), `escalated` (rejected: how often that was needless),
    `skipped` (the pre-router passed it by: how often the local tier would have done)."""

    __slots__ = ("by_outcome", "cost", "targets")

    def __init__(self) -> None:
        self.by_outcome: dict[str, Verdicts] = {}
        self.cost = 0.0
        self.targets: set[float] = set()  # the routes' target_quality, as the checks said

    def add(self, record: Record) -> None:
        outcome = str(record.get("local_outcome") or "accepted")
        verdicts = self.by_outcome.get(outcome)
        if verdicts is None:
            verdicts = self.by_outcome[outcome] = Verdicts()
        verdicts.add(record.get("verdict"))
        self.cost += record.get("cost_usd") or 0.0
        if isinstance(target := record.get("target_quality"), int | float):
            self.targets.add(float(target))


class Aggregator:
    def __init__(self, by: Sequence[str]) -> None:
        unknown = [d for d in by if d not in DIMENSIONS]
        if unknown:
            raise ValueError(
                f"--by: unknown {', '.join(unknown)} (choose from {', '.join(DIMENSIONS)})"
            )
        self.by = tuple(by)
        self.total = Group()
        self.groups: dict[tuple[str, ...], Group] = {}
        self.teams: dict[str, Group] = {}  # the headline's, whatever --by is
        self.tiers: dict[str, TierFigures] = {}
        self.hours: dict[str, Bucket] = {}
        self.scores = UnitHistogram(10)  # classifier scores
        self.first_ts: str | None = None
        self.last_ts: str | None = None
        self.tunes: list[Record] = []  # thresholds autotune changed, in ledger order

    def _key(self, record: Record) -> tuple[str, ...]:
        values = []
        for dimension in self.by:
            if dimension == "team":
                values.append(record.get("team") or "-")
            elif dimension == "route":
                values.append(record.get("route") or "-")
            elif dimension == "tier":
                values.append(record.get("final_tier") or record.get("local_tier") or "-")
            elif dimension == "model":
                values.append(record.get("final_model") or record.get("local_model") or "-")
            else:
                values.append(record["ts"][:10])
        return tuple(values)

    def add(self, record: Record) -> None:
        if record.get("kind") == "shadow":  # a shadow check, not a request
            self.total.checks.add(record)
            self._group(self._key(record)).checks.add(record)
            self._team(record).checks.add(record)
            return
        if record.get("kind") == "feedback":  # an application's word on an answer
            self.total.feedback.add(record)
            self._group(self._key(record)).feedback.add(record)
            self._team(record).feedback.add(record)
            return
        if record.get("kind") == "tune":  # a threshold autotune changed
            self.tunes.append(record)
            return
        if record.get("kind") == "rejections":  # a second's refusals of one team, summed
            for found in record.get("counts") or ():
                key = self._key({**record, "route": found.get("route")})
                reason = str(found.get("reason") or "refused")
                number = int(found.get("count") or 0)
                self._group(key).refused[reason] += number
                self._team(record).refused[reason] += number
                self.total.refused[reason] += number
            return
        ts: str = record["ts"]
        if self.first_ts is None or ts < self.first_ts:
            self.first_ts = ts
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts
        outcome = self._attempts(record["attempts"])
        group = self._group(self._key(record))
        self.total.add(record, outcome)
        group.add(record, outcome)
        self._team(record).add(record, outcome)
        hour = self.hours.get(ts[:13])
        if hour is None:
            hour = self.hours[ts[:13]] = Bucket()
        hour.add(record, outcome)
        classifier = record.get("classifier")
        if classifier and classifier.get("score") is not None:
            self.scores.add(classifier["score"])

    def _group(self, key: tuple[str, ...]) -> Group:
        return _of(self.groups, key)

    def _team(self, record: Record) -> Group:
        return _of(self.teams, str(record.get("team") or "-"))

    def _attempts(self, attempts: list[Record]) -> Outcome:
        outcome = Outcome(first_cost=attempts[0]["cost_usd"] if attempts else 0.0)
        for attempt in attempts:
            result = attempt["outcome"]
            outcome.prompt_tokens += attempt["prompt_tokens"]
            outcome.completion_tokens += attempt["completion_tokens"]
            outcome.by_source[usage_source(attempt)] += attempt["cost_usd"]
            outcome.escalated = outcome.escalated or result == "escalated"
            outcome.shed = outcome.shed or result == "shed"
            if is_local(attempt) and result in ANSWERED:
                outcome.local_answered = True
                outcome.local_accepted = outcome.local_accepted or result == "accepted"
            figures = self.tiers.get(attempt["tier"])
            if figures is None:
                figures = self.tiers[attempt["tier"]] = TierFigures()
            figures.add(attempt, result)
        return outcome


_K = TypeVar("_K")


def _of(groups: dict[_K, Group], key: _K) -> Group:
    """The group of `key`, made when it is first seen."""
    group = groups.get(key)
    if group is None:
        group = groups[key] = Group()
    return group


def usage_source(attempt: Record) -> str:
    """Where an attempt's tokens came from; records from before attempts said it: a local
    tier's were counted, a remote tier's reported."""
    found = attempt.get("usage_source")
    if found is None:
        return "counted" if is_local(attempt) else "reported"
    return str(found)


def is_local(attempt: Record) -> bool:
    """Whether the attempt ran in the gateway's process. Records written before attempts
    carried `local` knew only one local backend type, llama_cpp."""
    return bool(attempt.get("local", attempt["backend"] == "llama_cpp"))
