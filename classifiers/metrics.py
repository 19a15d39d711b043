"""Router metrics as RouteLLM defines them (Ong et al., 2024, "RouteLLM: Learning to Route
LLMs with Preference Data"; routellm/evals/evaluate.py), plus AUROC for deferral scores.

A router scores each prompt; sending the top-scored share `c` of prompts to the strong
model and the rest to the weak one gives accuracy `acc(c)`. With `w`, `s` the weak and
strong accuracies:

- PGR(c)  = (acc(c) - w) / (s - w)              performance gap recovered
- APGR    = area under PGR(c) for c in [0, 1]
            (RouteLLM: (AUC - AUC_weak) / (AUC_strong - AUC_weak), the same quantity)
- CPT(x)  = the smallest share of strong calls with PGR >= x, linearly interpolated

RouteLLM samples the curve at ~10 thresholds; here it is exact: one point per prompt.
A random router has PGR(c) = c in expectation: APGR 0.5, CPT(50%) 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[np.float64]
Flags = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Curve:
    share: Scores  # share of prompts sent to the strong model, 0 .. 1
    accuracy: Scores
    weak: float
    strong: float

    @property
    def pgr(self) -> Scores:
        gap = self.strong - self.weak
        if gap == 0:
            return np.ones_like(self.accuracy)
        return (self.accuracy - self.weak) / gap

    def apgr(self) -> float:
        return float(np.trapezoid(self.pgr, self.share))

    def cpt(self, target: float) -> float:
        """Share of strong calls where PGR first reaches `target` (1.0 if it never does)."""
        pgr = self.pgr
        reached = np.flatnonzero(pgr >= target - 1e-12)
        if reached.size == 0:
            return 1.0
        index = int(reached[0])
        if index == 0:
            return 0.0
        x0, x1, y0, y1 = self.share[index - 1], self.share[index], pgr[index - 1], pgr[index]
        return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))


def curve(score: Scores, weak_correct: Flags, strong_correct: Flags) -> Curve:
    """Route the highest scores to the strong model first (ties keep input order)."""
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    weak = np.asarray(weak_correct, dtype=np.float64)
    strong = np.asarray(strong_correct, dtype=np.float64)
    n = len(order)
    gain = np.concatenate([[0.0], np.cumsum(strong[order] - weak[order])])
    return Curve(
        np.arange(n + 1) / n, weak.mean() + gain / n, float(weak.mean()), float(strong.mean())
    )


def oracle_score(weak_correct: Flags, strong_correct: Flags) -> Scores:
    """Strong only where it helps (weak wrong, strong right), then where neither matters."""
    weak, strong = np.asarray(weak_correct), np.asarray(strong_correct)
    return (~weak & strong).astype(np.float64) - (weak & ~strong).astype(np.float64)


def auroc(score: Scores, positive: Flags) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    score = np.asarray(score, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = score[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(average, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
