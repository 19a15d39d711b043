"""The scikit-learn estimators: feature transformers, then a scaled logistic regression.

A router is `Pipeline([features: PromptFeatures, scale: StandardScaler, model:
LogisticRegression])` over prompt strings; an acceptance model is the same with
`AnswerFeatures` over `Answered` tuples. Linear on purpose: it mirrors exactly into the
fast scorer (`classifiers.model`), and across topics it does as well as boosted trees.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Self

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from classifiers.features import (
    ACCEPTANCE_NAMES,
    PROMPT_NAMES,
    acceptance_features,
    prompt_features,
)


class Answered(NamedTuple):
    """What an acceptance model judges: a prompt and the small tier's answer to it."""

    prompt: str
    answer: str
    logprobs: Sequence[float]
    finish_reason: str


class PromptFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Prompt strings -> `classifiers.features.prompt_features` rows."""

    def fit(self, prompts: Sequence[str], y: object = None) -> Self:
        return self

    def transform(self, prompts: Sequence[str]) -> npt.NDArray[np.float64]:
        return np.array([prompt_features(p) for p in prompts], dtype=np.float64)

    def get_feature_names_out(self, input_features: object = None) -> npt.NDArray[np.str_]:
        return np.array(PROMPT_NAMES)


class AnswerFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """`Answered` tuples -> `classifiers.features.acceptance_features` rows."""

    def fit(self, answers: Sequence[Answered], y: object = None) -> Self:
        return self

    def transform(self, answers: Sequence[Answered]) -> npt.NDArray[np.float64]:
        return np.array([acceptance_features(*a) for a in answers], dtype=np.float64)

    def get_feature_names_out(self, input_features: object = None) -> npt.NDArray[np.str_]:
        return np.array(ACCEPTANCE_NAMES)


def linear_pipeline(features: Any, c: float) -> Pipeline:
    return Pipeline(
        [
            ("features", features),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(C=c, max_iter=5000)),
        ]
    )


ROUTER_C = 0.1  # inverse regularisation: strong, so what is learned transfers across topics
ACCEPTANCE_C = 0.3


def router_pipeline(c: float = ROUTER_C) -> Pipeline:
    return linear_pipeline(PromptFeatures(), c)


def acceptance_pipeline(c: float = ACCEPTANCE_C) -> Pipeline:
    return linear_pipeline(AnswerFeatures(), c)
