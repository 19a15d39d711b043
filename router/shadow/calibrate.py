"""Acceptance thresholds from the ledger's shadow checks (`cascade classify calibrate
--from-ledger`): production traffic graded by the reference tier instead of benchmark labels.

Checks of accepted and of escalated local answers are drawn at the same rate, so together
they are an unbiased sample of the local step's answers across the whole range of its
acceptance value; each gives (the value, whether the answer agreed with the reference). The
reference tier's answer is taken as correct — the same assumption a cascade makes when it
escalates to it.
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
    url: str, route: str, *, since: str | None = None, until: str | None = None
) -> LedgerChecks:
    """The route's conclusive shadow checks that carry the local step's acceptance value."""
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
    if not scores:
        raise ValueError(f"no conclusive shadow checks of route '{route}' in the ledger")
    if len(tiers) > 1:
        raise ValueError(f"route '{route}' has checks of several local tiers: {dict(tiers)}")
    (tier,) = tiers
    return LedgerChecks(route, tier, np.array(scores), np.array(agree), kinds)


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
