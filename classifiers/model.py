"""Loaded classifiers: a fast scorer, its metadata, and (on demand) the fitted estimator.

`.score` computes exactly what the estimator's `predict_proba(...)[:, 1]` computes (the
same feature function, the scaler folded into the logistic regression's weights) without
scikit-learn: microseconds instead of a millisecond. The folded weights travel in the
artifact's metadata, so a serving process scores without importing scikit-learn, scipy or
skops; `.estimator` loads the skops pipeline the first time something asks for it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from classifiers.features import acceptance_features, prompt_features

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


def _probability(z: float) -> float:
    """The logistic function, without overflow for large |z| (as scipy's expit)."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def fold(estimator: Pipeline) -> dict[str, Any]:
    """The linear scorer of a scaler + logistic regression pipeline: the scaler folded into
    the weights. Stored in the artifact's metadata as `scorer`."""
    scale = estimator.named_steps["scale"]
    model = estimator.named_steps["model"]
    weights = model.coef_[0] / scale.scale_
    return {
        "weights": weights.tolist(),
        "intercept": float(model.intercept_[0] - weights @ scale.mean_),
    }


class _Linear:
    def __init__(
        self,
        scorer: dict[str, Any],
        metadata: dict[str, Any],
        estimator: Callable[[], Pipeline],
    ) -> None:
        self._weights: list[float] = [float(w) for w in scorer["weights"]]
        self._intercept = float(scorer["intercept"])
        self.metadata = metadata
        self._load_estimator = estimator
        self._estimator: Pipeline | None = None

    @property
    def estimator(self) -> Pipeline:
        """The fitted scikit-learn Pipeline this scorer mirrors (loaded on first use)."""
        if self._estimator is None:
            self._estimator = self._load_estimator()
        return self._estimator

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

    def score_features(self, features: Sequence[float]) -> float:
        """The score of a prompt from its feature vector (PROMPT_NAMES order), as shadow
        checks record it: what `cascade policy simulate` scores a new router on."""
        return self._score(list(features))


class Acceptance(_Linear):
    """P(the small tier's answer is correct | prompt, answer, its token log-probabilities)."""

    def score(
        self, prompt: str, answer: str, logprobs: Sequence[float], finish_reason: str
    ) -> float:
        return self._score(acceptance_features(prompt, answer, logprobs, finish_reason))
