"""Loaded classifiers: the fitted estimator, its metadata, and a fast scorer mirroring it.

`.score` computes exactly what the estimator's `predict_proba(...)[:, 1]` computes (the
same feature function, the scaler folded into the logistic regression's weights) without
scikit-learn's per-call validation: microseconds instead of a millisecond.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

from sklearn.pipeline import Pipeline

from classifiers.features import acceptance_features, prompt_features


def _probability(z: float) -> float:
    """The logistic function, without overflow for large |z| (as scipy's expit)."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class _Linear:
    def __init__(self, estimator: Pipeline, metadata: dict[str, Any]) -> None:
        scale = estimator.named_steps["scale"]
        model = estimator.named_steps["model"]
        weights = model.coef_[0] / scale.scale_
        self._weights: list[float] = weights.tolist()
        self._intercept = float(model.intercept_[0] - weights @ scale.mean_)
        self.estimator = estimator
        self.metadata = metadata

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def kind(self) -> str:
        return str(self.metadata["kind"])

    def _score(self, features: list[float]) -> float:
        z = self._intercept + sum(map(operator.mul, self._weights, features))
        return _probability(z)


class Router(_Linear):
    """P(the small model suffices | prompt): low scores go to the stronger tier."""

    def score(self, prompt: str) -> float:
        return self._score(prompt_features(prompt))


class Acceptance(_Linear):
    """P(the small tier's answer is correct | prompt, answer, its token log-probabilities)."""

    def score(
        self, prompt: str, answer: str, logprobs: Sequence[float], finish_reason: str
    ) -> float:
        return self._score(acceptance_features(prompt, answer, logprobs, finish_reason))
