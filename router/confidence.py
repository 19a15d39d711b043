"""Confidence of an answer: the acceptance methods, by name, in one registry.

Every method maps an answer to a value in [0, 1]; the cascade applies the step's threshold in
one place (`judge`). The policy schema's list of methods is this registry's keys. A method
that needs a model (`learned`) gets the acceptance artifact the policy names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from router.policy.model import AcceptanceSpec


class AcceptanceModel(Protocol):
    """A learned acceptance model (classifiers.Acceptance)."""

    def score(
        self, prompt: str, answer: str, logprobs: Sequence[float], finish_reason: str
    ) -> float: ...


@dataclass(frozen=True, slots=True)
class Answered:
    """What a method may look at: the question, the answer and its token logprobs."""

    question: str
    text: str
    logprobs: Sequence[float]
    finish_reason: str


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    value: Callable[[Answered, AcceptanceModel | None], float]
    needs_model: bool = False
    description: str = ""


def _mean_prob(logprobs: Sequence[float]) -> float:
    """Geometric-mean token probability: exp(mean log p)."""
    return math.exp(float(np.mean(logprobs)))


def _min_prob(logprobs: Sequence[float]) -> float:
    return math.exp(float(np.min(logprobs)))


def _p10_prob(logprobs: Sequence[float]) -> float:
    """Probability at the 10th percentile token: robust to one odd token, unlike min."""
    return math.exp(float(np.quantile(logprobs, 0.10)))


def _learned(answer: Answered, model: AcceptanceModel | None) -> float:
    assert model is not None  # the policy loader requires and loads it
    return model.score(answer.question, answer.text, answer.logprobs, answer.finish_reason)


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method(
            "mean_prob",
            lambda a, _: _mean_prob(a.logprobs),
            description="Geometric-mean token probability: exp(mean log p).",
        ),
        Method("min_prob", lambda a, _: _min_prob(a.logprobs), description="Least token p."),
        Method(
            "p10_prob",
            lambda a, _: _p10_prob(a.logprobs),
            description="Token probability at the 10th percentile (robust to one odd token).",
        ),
        Method(
            "learned",
            _learned,
            needs_model=True,
            description="An acceptance model's P(correct | prompt, answer, logprobs).",
        ),
    )
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
    """A logprob method's confidence. An answer with no tokens (or no logprobs) has
    confidence 0: it is never accepted."""
    answered = Answered("", "", logprobs or (), "stop")
    value = METHODS[method].value(answered, None) if logprobs else 0.0
    return Confidence(method, value, threshold)


def judge(
    spec: AcceptanceSpec, answer: Answered, models: Mapping[str, AcceptanceModel]
) -> Confidence:
    """The step's acceptance applied to one answer (no tokens or logprobs: never accepted)."""
    model = models[spec.model] if spec.model is not None else None
    value = METHODS[spec.method].value(answer, model) if answer.logprobs else 0.0
    return Confidence(spec.method, value, spec.threshold)


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
