from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from classifiers.metrics import auroc, curve, oracle_score

# 4 prompts: the weak model gets 0 and 1 right, the strong one 0, 2 and 3.
WEAK = np.array([True, True, False, False])
STRONG = np.array([True, False, True, True])


def test_curve_by_hand() -> None:
    # route prompt 3, then 2, then 1, then 0 to the strong model
    result = curve(np.array([0.1, 0.2, 0.8, 0.9]), WEAK, STRONG)
    assert result.weak == 0.5
    assert result.strong == 0.75
    np.testing.assert_allclose(result.accuracy, [0.5, 0.75, 1.0, 0.75, 0.75])
    np.testing.assert_allclose(result.pgr, [0.0, 1.0, 2.0, 1.0, 1.0])
    assert result.cpt(0.5) == pytest.approx(0.125)  # halfway to the first step
    assert result.cpt(1.0) == pytest.approx(0.25)
    # trapezoids of width 0.25: (0+1)/2 + (1+2)/2 + (2+1)/2 + (1+1)/2 = 4.5 -> 4.5 * 0.25
    assert result.apgr() == pytest.approx(1.125)


def test_oracle_beats_random_and_random_is_half() -> None:
    rng = np.random.default_rng(0)
    weak = rng.random(20_000) < 0.6
    strong = weak | (rng.random(20_000) < 0.5)
    random = curve(rng.random(20_000), weak, strong)
    assert random.apgr() == pytest.approx(0.5, abs=0.02)
    assert random.cpt(0.5) == pytest.approx(0.5, abs=0.02)
    oracle = curve(oracle_score(weak, strong), weak, strong)
    assert oracle.cpt(0.5) < 0.2
    assert oracle.apgr() > random.apgr()


def test_cpt_never_reached_is_one() -> None:
    worst = curve(np.array([0.9, 0.8, 0.1, 0.2]), WEAK, STRONG)  # worst prompts first
    assert worst.cpt(2.5) == 1.0


def test_auroc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(1)
    score = rng.integers(0, 5, 500).astype(float)
    positive = rng.random(500) < 0.3
    assert auroc(score, positive) == pytest.approx(roc_auc_score(positive, score))
