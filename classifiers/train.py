"""Fit a router or an acceptance model and write it as an artifact.

Held-out parts (whole groups, e.g. MMLU subjects, and/or a seeded share of the other
rows) are left out of training and named in the metadata, so `eval --held-out` scores
exactly the rows the model never saw.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.pipeline import Pipeline

from classifiers.artifacts import ACCEPTANCE, ROUTER, save
from classifiers.estimators import (
    ACCEPTANCE_C,
    ROUTER_C,
    acceptance_pipeline,
    router_pipeline,
)
from classifiers.examples import Examples, Flags, prompt_id
from classifiers.features import ACCEPTANCE_NAMES, PROMPT_NAMES

LABELS = {
    ROUTER: "1 when the weak (small) model answered correctly: the score is P(it suffices)",
    ACCEPTANCE: "1 when the small tier's answer was graded correct",
}


@dataclass(frozen=True, slots=True)
class HoldOut:
    groups: tuple[str, ...] = ()
    share: float = 0.0
    seed: int = 0

    def mask(self, examples: Examples) -> Flags:
        """True for the rows left out of training."""
        unknown = set(self.groups) - set(examples.groups.tolist())
        if unknown:
            raise ValueError(f"no group(s) {sorted(unknown)} in {examples.source}")
        held = np.isin(examples.groups, list(self.groups))
        if self.share > 0:
            rest = np.flatnonzero(~held)
            rng = np.random.default_rng(self.seed)
            picked = rng.choice(rest, size=round(len(rest) * self.share), replace=False)
            held[picked] = True
        return held


def fit(kind: str, examples: Examples, c: float | None = None) -> Pipeline:
    if kind == ACCEPTANCE:
        if examples.answers is None:
            raise ValueError("an acceptance model learns from a label run (.jsonl), not a table")
        return acceptance_pipeline(c or ACCEPTANCE_C).fit(examples.answers, examples.weak)
    return router_pipeline(c or ROUTER_C).fit(examples.prompts, examples.weak)


def train(
    kind: str,
    examples: Examples,
    out: Path,
    *,
    hold_out: HoldOut = HoldOut(),
    columns: Sequence[str] = (),
    c: float | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Fit on all rows but the held-out ones; save; returns the metadata."""
    held = hold_out.mask(examples)
    training = examples.subset(~held)
    if len(set(training.weak.tolist())) < 2:
        raise ValueError("the training rows hold only one label")
    estimator = fit(kind, training, c)
    model = estimator.named_steps["model"]
    metadata: dict[str, Any] = {
        "name": name or out.stem,
        "kind": kind,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sklearn_version": sklearn.__version__,
        "training_data": {
            "source": examples.source,
            "sha256": examples.sha256,
            "rows": len(training),
            "columns": list(columns),
        },
        "label": LABELS[kind],
        "features": estimator.named_steps["features"].get_feature_names_out().tolist(),
        "estimator": f"StandardScaler + LogisticRegression(C={model.C})",
        "held_out": {
            "groups": list(hold_out.groups),
            "share": hold_out.share,
            "seed": hold_out.seed,
            "prompts": sorted({prompt_id(p) for p in examples.subset(held).prompts}),
        },
    }
    return save(estimator, metadata, out)


def train_vectors(
    kind: str,
    vectors: np.ndarray,
    labels: Flags,
    ids: Sequence[str],
    out: Path,
    *,
    source: str,
    hold_out_share: float = 0.25,
    seed: int = 0,
    c: float | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Fit on feature vectors already computed (the ledger's shadow checks store them, so
    models are refitted without prompts); a seeded share held out and scored (AUROC). The
    saved pipeline starts with the same stateless feature transformer as one fitted on
    text, so it serves and evaluates like any other artifact."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from classifiers.estimators import AnswerFeatures, PromptFeatures
    from classifiers.metrics import auroc

    width = len(ACCEPTANCE_NAMES if kind == ACCEPTANCE else PROMPT_NAMES)
    if vectors.ndim != 2 or vectors.shape[1] != width:
        raise ValueError(f"{kind} features must be rows of {width} values")
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    held[rng.choice(len(labels), size=round(len(labels) * hold_out_share), replace=False)] = True
    if len(set(labels[~held].tolist())) < 2:
        raise ValueError("the training rows hold only one label")
    scale = StandardScaler().fit(vectors[~held])
    model = LogisticRegression(
        C=c or (ACCEPTANCE_C if kind == ACCEPTANCE else ROUTER_C), max_iter=5000
    )
    model.fit(scale.transform(vectors[~held]), labels[~held])
    features = AnswerFeatures() if kind == ACCEPTANCE else PromptFeatures()
    estimator = Pipeline([("features", features), ("scale", scale), ("model", model)])
    metrics: dict[str, Any] = {"held_out_rows": int(held.sum())}
    if held.any() and len(set(labels[held].tolist())) == 2:
        scores = model.predict_proba(scale.transform(vectors[held]))[:, 1]
        metrics["held_out_auroc"] = round(auroc(scores, labels[held]), 4)
    metadata: dict[str, Any] = {
        "name": name or out.stem,
        "kind": kind,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sklearn_version": sklearn.__version__,
        "training_data": {"source": source, "rows": int((~held).sum()), "columns": []},
        "label": LABELS[kind] + " (here: agreed with the reference tier in a shadow check)",
        "features": list(features.get_feature_names_out()),
        "estimator": f"StandardScaler + LogisticRegression(C={model.C})",
        "held_out": {
            "groups": [],
            "share": hold_out_share,
            "seed": seed,
            "checks": sorted(str(i) for i, h in zip(ids, held, strict=True) if h),
            "prompts": [],
        },
        "metrics": metrics,
    }
    return save(estimator, metadata, out)
