"""Bounded-memory summaries: quantiles from log-spaced buckets, fixed histograms, PSI."""

from __future__ import annotations

import math
from collections import Counter

_RATIO = 1.02  # bucket width: a quantile is within 1% of the true value
_LOG_RATIO = math.log(_RATIO)


class LogHistogram:
    """Counts of positive values in buckets [r^k, r^(k+1)); memory grows with the log of the
    values' range (a few hundred buckets from 0.01 ms to an hour), never with their number."""

    __slots__ = ("buckets", "count", "zeros")

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.zeros = 0

    def add(self, value: float) -> None:
        self.count += 1
        if value <= 0:
            self.zeros += 1
        else:
            self.buckets[math.floor(math.log(value) / _LOG_RATIO)] += 1

    def merge(self, other: LogHistogram) -> None:
        self.buckets.update(other.buckets)
        self.count += other.count
        self.zeros += other.zeros

    def quantile(self, q: float) -> float | None:
        """The value at quantile q (bucket midpoint, geometric); None when empty."""
        if not self.count:
            return None
        rank = q * (self.count - 1) + 1
        seen = self.zeros
        if seen >= rank:
            return 0.0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= rank:
                return float(_RATIO ** (bucket + 0.5))
        return float(_RATIO ** (max(self.buckets) + 0.5))


class UnitHistogram:
    """Counts of values in [0, 1] in `bins` equal bins (confidence, classifier scores)."""

    __slots__ = ("counts",)

    def __init__(self, bins: int = 10) -> None:
        self.counts = [0] * bins

    def add(self, value: float) -> None:
        bins = len(self.counts)
        self.counts[min(bins - 1, max(0, int(value * bins)))] += 1

    @property
    def total(self) -> int:
        return sum(self.counts)


def psi(expected: list[int], actual: list[int], floor: float = 1e-4) -> float | None:
    """Population stability index of `actual` against `expected` (same bins): the sum of
    (a - e) * ln(a / e) over bin shares. < 0.1 stable, 0.1-0.25 moderate, > 0.25 drift."""
    total_e, total_a = sum(expected), sum(actual)
    if not total_e or not total_a:
        return None
    value = 0.0
    for e, a in zip(expected, actual, strict=True):
        share_e, share_a = max(e / total_e, floor), max(a / total_a, floor)
        value += (share_a - share_e) * math.log(share_a / share_e)
    return value
