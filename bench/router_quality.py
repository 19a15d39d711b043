"""Router and acceptance quality on held-out data, ours beside the TF-IDF + LR baseline.

Strong-vs-weak (routellm_labels, Mixtral-8x7B vs GPT-4): MMLU in 5 folds of whole
subjects, GSM8K in 5 folds of rows; each fold's model is trained on every other row of
routellm_labels (both benchmarks) and scores only its fold. Reported: CPT(50%), CPT(80%),
APGR over the pooled out-of-fold scores, and the spread of CPT(50%) across folds.
Acceptance (the local tier's label run): 5 stratified folds, AUROC for "the answer is
correct", against the mean token log-probability rule.
"""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline

from bench.common import BENCH, append_results
from classifiers.datasets import default_root
from classifiers.estimators import acceptance_pipeline, router_pipeline
from classifiers.evaluate import mean_logprob
from classifiers.examples import Examples, load_examples
from classifiers.metrics import auroc, curve

WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
LABELS = BENCH.parent / "classifiers" / "artifacts" / "labels-smollm2-135m-q4_1.jsonl"


def tfidf() -> object:
    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
        LogisticRegression(C=1.0, max_iter=2000),
    )


def out_of_fold(make: object, data: Examples, folds: list[tuple[np.ndarray, np.ndarray]],
                rows: np.ndarray) -> np.ndarray:  # fmt: skip
    """P(weak suffices) for `rows`, each from a model that never saw its fold."""
    score = np.zeros(len(data))
    prompts = np.array(data.prompts, dtype=object)
    for test in folds:
        train = np.ones(len(data), bool)
        train[test[1]] = False
        model = make().fit(prompts[train], data.weak[train])  # type: ignore[operator]
        score[test[1]] = model.predict_proba(prompts[test[1]])[:, 1]
    return score[rows]


def router_rows() -> list[list[str]]:
    data = load_examples(default_root() / "routellm_labels", WEAK, STRONG)
    bench = data.benchmarks()
    rows = []
    for name in ("mmlu", "gsm8k"):
        index = np.flatnonzero(bench == name)
        if name == "mmlu":
            split = GroupKFold(5, shuffle=True, random_state=0).split(
                index, groups=data.groups[index]
            )
        else:
            split = KFold(5, shuffle=True, random_state=0).split(index)
        folds = [(index[a], index[b]) for a, b in split]
        for label, make in (("ours (prompt shape + LR)", router_pipeline), ("TF-IDF + LR", tfidf)):
            score = out_of_fold(make, data, folds, index)
            pos = {i: k for k, i in enumerate(index)}
            w, s = data.weak[index], data.strong[index]  # type: ignore[index]
            routed = curve(-score, w, s)
            per_fold = [
                curve(-score[[pos[i] for i in b]], data.weak[b], data.strong[b]).cpt(0.5)  # type: ignore[index]
                for _, b in folds
            ]
            rows.append([
                name, label, str(len(index)), f"{routed.cpt(0.5):.3f}", f"{routed.cpt(0.8):.3f}",
                f"{routed.apgr():.3f}", f"{min(per_fold):.2f} to {max(per_fold):.2f}",
            ])  # fmt: skip
    return rows


def acceptance_rows() -> list[list[str]]:
    data = load_examples(LABELS)
    assert data.answers is not None
    answers = np.array(data.answers, dtype=object)
    score = np.zeros(len(data))
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(answers, data.weak):
        model = acceptance_pipeline().fit(list(answers[train]), data.weak[train])
        score[test] = model.predict_proba(list(answers[test]))[:, 1]
    baseline = auroc(mean_logprob(data), data.weak)
    rows = [
        ["all", "acceptance model", f"{auroc(score, data.weak):.3f}"],
        ["all", "mean token logprob", f"{baseline:.3f}"],
    ]
    for name in sorted(set(data.groups.tolist())):
        mask = data.groups == name
        rows.append([name, "acceptance model", f"{auroc(score[mask], data.weak[mask]):.3f}"])
    return rows


def main() -> None:
    append_results(
        "Strong-vs-weak router on held-out routellm_labels (out-of-fold)",
        ["benchmark", "router", "n", "CPT(50%)", "CPT(80%)", "APGR", "CPT(50%) per fold"],
        router_rows(),
        "MMLU: 5 folds of whole subjects; GSM8K: 5 folds of rows; random = 0.500 / 0.800 / 0.500.",
    )
    append_results(
        "Acceptance model, AUROC for 'the local answer is correct' (5 stratified folds)",
        ["dataset", "score", "AUROC"],
        acceptance_rows(),
        "Local tier: SmolLM2-135M-Instruct Q4_1, label run in classifiers/artifacts.",
    )


if __name__ == "__main__":
    main()
