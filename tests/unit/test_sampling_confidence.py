from __future__ import annotations

import math

import numpy as np
import pytest

from router.backends.sampling import Sampler
from router.confidence import features, score


def test_greedy_picks_argmax_with_true_logprob() -> None:
    logits = np.array([1.0, 3.0, 2.0], dtype=np.float32)
    token, logprob = Sampler(0.0, 1.0, None).pick(logits)
    expected = 3.0 - math.log(math.exp(1) + math.exp(3) + math.exp(2))
    assert token == 1
    assert logprob == pytest.approx(expected, abs=1e-6)


def test_top_p_keeps_only_the_nucleus() -> None:
    logits = np.array([10.0, 0.0, 0.0, 0.0], dtype=np.float32)
    sampler = Sampler(1.0, 0.5, seed=1)
    assert {sampler.pick(logits)[0] for _ in range(50)} == {0}


def test_sampling_is_seeded_and_logprob_ignores_temperature() -> None:
    logits = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    a = [Sampler(1.5, 0.95, seed=3).pick(logits) for _ in range(3)]
    b = [Sampler(1.5, 0.95, seed=3).pick(logits) for _ in range(3)]
    assert a == b
    token, logprob = a[0]
    reference = logits[token] - np.log(np.exp(logits.astype(np.float64)).sum())
    assert logprob == pytest.approx(reference, abs=1e-5)


def test_confidence_methods() -> None:
    logprobs = [math.log(0.9), math.log(0.5), math.log(0.8)]
    assert score("mean_prob", logprobs, 0.7).value == pytest.approx((0.9 * 0.5 * 0.8) ** (1 / 3))
    assert score("min_prob", logprobs, 0.7).value == pytest.approx(0.5)
    assert score("mean_prob", logprobs, 0.7).accepted
    assert not score("min_prob", logprobs, 0.7).accepted
    assert score("mean_prob", [], 0.0).value == 0.0


def test_features_summarise_quantiles() -> None:
    values = features([-0.1, -0.2, -3.0, -0.05])
    assert values["n"] == 4
    assert values["min"] == -3.0
    assert values["q05"] < values["q50"] <= 0


@pytest.mark.parametrize("seed", [-1, -(2**63), 2**63 - 1, 0])
def test_any_integer_seed_samples(seed: int) -> None:
    logits = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    token, logprob = Sampler(0.8, 1.0, seed).pick(logits)
    assert 0 <= token < 3 and logprob < 0


@pytest.mark.parametrize("temperature", [2.5e-324, 1e-300, 9.9e-5])
def test_a_vanishing_temperature_is_greedy_not_nan(temperature: float) -> None:
    logits = np.array([1.0, 5.0, 3.0], dtype=np.float32)
    assert Sampler(temperature, 1.0, 7).pick(logits)[0] == 1


class OnlyTokens:
    """A gate that allows a fixed set of tokens (what a grammar does), counting its calls."""

    def __init__(self, allowed: set[int]) -> None:
        self.allowed_ids = allowed
        self.sizes: list[int] = []

    def allowed(self, ids: np.ndarray, logits: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
        self.sizes.append(ids.shape[0])
        return ids[np.isin(ids, list(self.allowed_ids))]


def test_a_gate_picks_the_likeliest_allowed_token_with_the_models_own_logprob() -> None:
    logits = np.arange(100, dtype=np.float32)  # token 99 likeliest
    gate = OnlyTokens({97, 3})
    picked = Sampler(0.0, 1.0, None).pick(logits, gate)
    assert picked is not None and picked[0] == 97
    reference = 97.0 - np.log(np.exp(logits.astype(np.float64)).sum())
    assert picked[1] == pytest.approx(reference, abs=1e-5)  # not renormalised by the grammar
    assert gate.sizes == [40]  # only the likeliest were filtered


def test_a_gate_falls_back_to_the_whole_vocabulary_then_to_nothing() -> None:
    logits = np.arange(100, dtype=np.float32)
    gate = OnlyTokens({3, 5})  # neither among the 40 likeliest
    picked = Sampler(0.0, 1.0, None).pick(logits, gate)
    assert picked is not None and picked[0] == 5
    assert gate.sizes == [40, 100]
    sampled = {Sampler(1.0, 1.0, seed).pick(logits, OnlyTokens({3, 5})) for seed in range(20)}
    assert {token for token, _ in (s for s in sampled if s is not None)} <= {3, 5}
    assert Sampler(0.0, 1.0, None).pick(logits, OnlyTokens(set())) is None
