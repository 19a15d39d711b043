"""Acceptance thresholds from the ledger's shadow checks (`cascade classify calibrate
--from-ledger`): production traffic graded by the reference tier instead of benchmark labels.

Checks of accepted and of escalated local answers are drawn at the same rate, so together
they are an unbiased sample of the local step's answers across the whole range of its
acceptance value; each gives (the value, whether the answer agreed with the reference). The
reference tier's answer is taken as correct — the same assumption a cascade makes when it
escalates to it. Applications' feedback (`POST /v1/feedback`) on the route's local answers
counts too, good as agreeing: it is the better judge where it exists, but only of answers
that were served (above the threshold).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from classifiers.calibrate import Calibration, calibrate
from router.ledger import open_reader, parse_ledger_url

_CALIBRATES = ("accepted", "escalated")  # checks with the local step's own acceptance value


def _conclusive(
    url: str, route: str, outcomes: tuple[str, ...], since: str | None, until: str | None
) -> Iterator[dict[str, Any]]:
    """The route's shadow checks of these kinds (`local_outcome`) that agreed or disagreed."""
    reader = open_reader(parse_ledger_url(url))
    try:
        for body in reader.records(since, until):
            record = orjson.loads(body)
            if (
                record.get("kind") == "shadow"
                and record.get("route") == route
                and record.get("local_outcome", "accepted") in outcomes
                and record.get("verdict") in ("agree", "disagree")
            ):
                yield record
    finally:
        reader.close()


@dataclass(frozen=True, slots=True)
class LedgerChecks:
    route: str
    tier: str  # the local step's tier
    scores: np.ndarray  # its acceptance values
    agree: np.ndarray  # whether each answer agreed with the reference tier
    kinds: Counter[str]  # checks by local_outcome

    def __len__(self) -> int:
        return len(self.scores)


def checks_threshold(
    scores: np.ndarray,
    agree: np.ndarray,
    *,
    strong_share: float | None = None,
    quality: float | None = None,
) -> Calibration:
    """A threshold from shadow checks: calibrate() with the reference tier's answer taken as
    right (what `calibrate --from-ledger` and autotune both pick by)."""
    reference = np.ones(len(scores), dtype=bool)
    return calibrate(scores, agree, reference, strong_share=strong_share, quality=quality)


def ledger_checks(
    url: str,
    route: str,
    *,
    since: str | None = None,
    until: str | None = None,
    feedback: bool = True,
) -> LedgerChecks:
    """The route's conclusive shadow checks that carry the local step's acceptance value;
    with `feedback`, also what applications said (good or bad) of the route's local answers,
    each with the acceptance value its request's record holds. Feedback exists only for
    answers that were served, so it speaks to the kept side of the threshold alone."""
    scores: list[float] = []
    agree: list[bool] = []
    kinds: Counter[str] = Counter()
    tiers: Counter[str] = Counter()
    for record in _conclusive(url, route, _CALIBRATES, since, until):
        value = record.get("local_confidence")
        if isinstance(value, int | float):
            scores.append(float(value))
            agree.append(record["verdict"] == "agree")
            kinds[record.get("local_outcome", "accepted")] += 1
            tiers[str(record.get("local_tier"))] += 1
    if feedback:
        for tier, value, good in _feedback(url, route, since, until):
            scores.append(value)
            agree.append(good)
            kinds["feedback"] += 1
            tiers[tier] += 1
    if not scores:
        raise ValueError(f"no conclusive shadow checks of route '{route}' in the ledger")
    if len(tiers) > 1:
        raise ValueError(f"route '{route}' has checks of several local tiers: {dict(tiers)}")
    (tier,) = tiers
    return LedgerChecks(route, tier, np.array(scores), np.array(agree), kinds)


def _feedback(
    url: str, route: str, since: str | None, until: str | None
) -> Iterator[tuple[str, float, bool]]:
    """(local tier, acceptance value, good) for each request of `route` whose local answer an
    application called good or bad (its latest word), from two passes: the feedback in the
    window, then the records it speaks of (wherever they are)."""
    said: dict[str, bool] = {}
    reader = open_reader(parse_ledger_url(url))
    try:
        for body in reader.records(since, until):
            if b'"feedback"' not in body:
                continue
            record = orjson.loads(body)
            if (
                record.get("kind") == "feedback"
                and record.get("route") == route
                and record.get("local")
                and record.get("verdict") in ("good", "bad")
            ):
                said[str(record["feedback_of"])] = record["verdict"] == "good"
        if not said:
            return
        for body in reader.records(None, until):
            if b'"kind"' in body:
                continue
            record = orjson.loads(body)
            good = said.get(record.get("request_id"))
            if good is None:
                continue
            attempts = record.get("attempts") or ()
            served = next((a for a in reversed(attempts) if a.get("outcome") == "accepted"), None)
            if served is None or not served.get("local"):
                continue
            value = (served.get("confidence") or {}).get("value")
            if isinstance(value, int | float):
                yield str(served["tier"]), float(value), good
    finally:
        reader.close()


@dataclass(frozen=True, slots=True)
class LedgerRows:
    """Feature vectors and labels from shadow checks, for refitting a classifier."""

    vectors: np.ndarray
    agree: np.ndarray
    ids: list[str]  # the checks' own ids
    kinds: Counter[str]


# which checks each kind of model learns from: an acceptance model judges answers the local
# step gave (accepted or rejected); a router, prompts (every kind of check)
_TRAINS = {"acceptance": ("accepted", "escalated"), "router": ("accepted", "escalated", "skipped")}
_VECTORS = {"acceptance": "acceptance", "router": "prompt"}


def ledger_rows(url: str, route: str, kind: str, *, since: str | None = None) -> LedgerRows:
    vectors: list[list[float]] = []
    agree: list[bool] = []
    ids: list[str] = []
    kinds: Counter[str] = Counter()
    for record in _conclusive(url, route, _TRAINS[kind], since, None):
        vector = (record.get("features") or {}).get(_VECTORS[kind])
        if isinstance(vector, list):
            vectors.append([float(v) for v in vector])
            agree.append(record["verdict"] == "agree")
            ids.append(str(record.get("request_id")))
            kinds[record.get("local_outcome", "accepted")] += 1
    if not vectors:
        raise ValueError(f"no conclusive shadow checks with features for route '{route}'")
    return LedgerRows(np.array(vectors), np.array(agree), ids, kinds)
