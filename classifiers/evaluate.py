"""Score a model on labeled rows the way RouteLLM scores routers (see `metrics`).

Per benchmark and over all rows: n, weak and strong accuracy, APGR, CPT(50%), CPT(80%) and
AUROC of the score for "the weak model's answer is correct", with a random router (its
expectation: PGR(c) = c, so APGR 0.5 and CPT(x) = x) and the oracle beside the model. For
an acceptance model the mean token log-probability rule is reported beside it. Label runs
have no strong column: the tier a request escalates to is then taken as always correct.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from classifiers.examples import Examples, Flags, prompt_id
from classifiers.metrics import Curve, Scores, auroc, curve, oracle_score
from classifiers.model import Acceptance, Router


@dataclass(frozen=True, slots=True)
class Row:
    benchmark: str
    router: str
    n: int
    weak_accuracy: float
    strong_accuracy: float
    apgr: float
    cpt50: float
    cpt80: float
    auroc: float


def scores(model: Router | Acceptance, examples: Examples) -> Scores:
    """P(the weak model / small tier suffices) per row, by the fast scorer."""
    if isinstance(model, Acceptance):
        if examples.answers is None:
            raise ValueError("an acceptance model is evaluated on a label run (.jsonl)")
        return np.array([model.score(*answered) for answered in examples.answers])
    return np.array([model.score(prompt) for prompt in examples.prompts])


def mean_logprob(examples: Examples) -> Scores:
    assert examples.answers is not None
    return np.array([float(np.mean(a.logprobs)) if a.logprobs else -99.0 for a in examples.answers])


def held_out(model: Router | Acceptance, examples: Examples) -> Flags:
    """The rows `train` left out of this model (by prompt), per its metadata."""
    ids = set(model.metadata.get("held_out", {}).get("prompts", []))
    if not ids:
        raise ValueError(f"{model.name}: its metadata names no held-out rows")
    mask = np.array([prompt_id(p) in ids for p in examples.prompts])
    if not mask.any():
        raise ValueError(f"none of {model.name}'s held-out rows are in {examples.source}")
    return mask


def _row(benchmark: str, router: str, score: Scores, weak: Flags, strong: Flags) -> Row:
    routed: Curve = curve(-score, weak, strong)  # low P(weak suffices) goes strong first
    return Row(
        benchmark,
        router,
        len(score),
        routed.weak,
        routed.strong,
        routed.apgr(),
        routed.cpt(0.5),
        routed.cpt(0.8),
        auroc(score, weak),
    )


def _random(benchmark: str, weak: Flags, strong: Flags) -> Row:
    return Row(benchmark, "random", len(weak), float(weak.mean()), float(strong.mean()),
               0.5, 0.5, 0.8, 0.5)  # fmt: skip


def evaluate(model: Router | Acceptance, examples: Examples) -> dict[str, Any]:
    """The report: one row per (benchmark, router), plus the curves for the plot."""
    score = scores(model, examples)
    baselines = {"mean-logprob": mean_logprob(examples)} if isinstance(model, Acceptance) else {}
    strong = examples.strong_or_assumed
    benchmarks = examples.benchmarks()
    rows: list[Row] = []
    curves: dict[str, dict[str, list[list[float]]]] = {}
    names = sorted(set(benchmarks.tolist()))
    for benchmark in [*names, "all"] if len(names) > 1 else names:
        mask = np.ones(len(score), bool) if benchmark == "all" else benchmarks == benchmark
        w, s = examples.weak[mask], strong[mask]
        candidates = {model.name: score[mask], **{k: v[mask] for k, v in baselines.items()}}
        candidates["oracle"] = -oracle_score(w, s)
        for router, values in candidates.items():
            rows.append(_row(benchmark, router, values, w, s))
        rows.append(_random(benchmark, w, s))
        curves[benchmark] = {
            router: _sampled(curve(-values, w, s)) for router, values in candidates.items()
        }
    return {
        "model": {k: model.metadata.get(k) for k in ("name", "kind", "version", "label")},
        "labels": examples.source,
        "strong_assumed_correct": examples.strong is None,
        "rows": [asdict(row) for row in rows],
        "curves": curves,
    }


def _sampled(routed: Curve, points: int = 101) -> list[list[float]]:
    """(share to strong, accuracy) at `points` evenly spaced shares, for plotting."""
    shares = np.linspace(0, 1, points)
    accuracy = np.interp(shares, routed.share, routed.accuracy)
    return [[round(float(x), 4), round(float(y), 5)] for x, y in zip(shares, accuracy, strict=True)]
