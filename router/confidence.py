"""Confidence of an answer from its token log-probabilities.

Every method maps an answer to a value in [0, 1]; the cascade applies the route's threshold
in one place. Names are registered here so policies and the CLI share one list.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


def _mean_prob(logprobs: Sequence[float]) -> float:
    """Geometric-mean token probability: exp(mean log p)."""
    return math.exp(float(np.mean(logprobs)))


def _min_prob(logprobs: Sequence[float]) -> float:
    return math.exp(float(np.min(logprobs)))


def _p10_prob(logprobs: Sequence[float]) -> float:
    """Probability at the 10th percentile token: robust to one odd token, unlike min."""
    return math.exp(float(np.quantile(logprobs, 0.10)))


METHODS: dict[str, Callable[[Sequence[float]], float]] = {
    "mean_prob": _mean_prob,
    "min_prob": _min_prob,
    "p10_prob": _p10_prob,
}


@dataclass(frozen=True, slots=True)
class Confidence:
    method: str
    value: float
    threshold: float

    @property
    def accepted(self) -> bool:
        return self.value >= self.threshold

    def as_record(self) -> dict[str, object]:
        return {"method": self.method, "value": round(self.value, 6), "threshold": self.threshold}


def score(method: str, logprobs: Sequence[float] | None, threshold: float) -> Confidence:
    """An answer with no tokens (or no logprobs) has confidence 0: it is never accepted."""
    value = METHODS[method](logprobs) if logprobs else 0.0
    return Confidence(method, value, threshold)


def features(logprobs: Sequence[float]) -> dict[str, float]:
    """Summary of per-token log-probabilities, for labeling and acceptance models."""
    if not logprobs:
        return {"n": 0.0}
    values = np.asarray(logprobs, dtype=np.float64)
    q = np.quantile(values, [0.05, 0.10, 0.25, 0.50])
    return {
        "n": float(values.size),
        "mean": float(values.mean()),
        "min": float(values.min()),
        "q05": float(q[0]),
        "q10": float(q[1]),
        "q25": float(q[2]),
        "q50": float(q[3]),
    }
