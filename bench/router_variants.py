"""Benchmark (o): what else was tried for the strong-vs-weak router, on the same held-out
folds as bench/router_quality.py (MMLU: 5 folds of whole subjects, so every score is on
subjects the model never saw; GSM8K: 5 folds of rows).

    python bench/router_variants.py [--likelihood]

Variants: our prompt features with logistic regression trained on both benchmarks (the
bundled recipe), the same trained on the fold's own benchmark only, a few extra word-problem
features (distinct numbers, their size, decimals, percentages, rate and time words, money,
comparisons, sentence length, conditional words), gradient-boosted trees on the same, and
with `--likelihood` the prompt's mean token log-probability under the bundled local model
(GSM8K rows only: ~1 minute; MMLU's 9,512 rows would take half an hour on 2 cores).
Reported: CPT(50%) and APGR of the pooled out-of-fold scores, and each variant's extra cost
per request.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bench.common import append_results
from classifiers.datasets import default_root
from classifiers.examples import Examples, load_examples
from classifiers.features import prompt_features
from classifiers.metrics import curve

WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORDS = {
    "percent": re.compile(r"%|\bpercent", re.I),
    "rate": re.compile(r"\b(each|every|per|times|twice|half|third|quarter|double|triple)\b", re.I),
    "time": re.compile(r"\b(hours?|minutes?|days?|weeks?|months?|years?)\b", re.I),
    "compare": re.compile(r"\b(more|less|fewer|than)\b", re.I),
    "conditional": re.compile(r"\b(if|then|after|before|remaining|left|rest)\b", re.I),
}


def extra_features(prompt: str) -> list[float]:
    numbers = _NUMBER.findall(prompt)
    values = [float(n.replace(",", "").split(".")[0] or 0) for n in numbers] or [0.0]
    sentences = [s for s in re.split(r"[.?!]\s", prompt) if s.strip()]
    return [
        len(set(numbers)),
        float(np.log1p(max(values))),
        sum("." in n for n in numbers),
        sum(v >= 100 for v in values),
        prompt.count("$"),
        float(np.mean([len(s.split()) for s in sentences])) if sentences else 0.0,
        *(len(pattern.findall(prompt)) for pattern in _WORDS.values()),
    ]


def likelihood(prompts: list[str]) -> tuple[np.ndarray, float]:
    """Mean token log-probability of each prompt under the bundled model, and seconds each."""
    import llama_cpp

    from router.backends.local_llama import bundled_model_path

    llama = llama_cpp.Llama(
        str(bundled_model_path()), n_ctx=2048, logits_all=True, verbose=False, n_threads=2
    )
    values, started = [], time.perf_counter()
    for prompt in prompts:
        tokens = llama.tokenize(prompt.encode(), add_bos=True)[:2000]
        llama.reset()
        llama.eval(tokens)
        logits = np.asarray(llama.scores[: len(tokens)], dtype=np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        logsoft = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        values.append(float(logsoft[np.arange(len(tokens) - 1), tokens[1:]].mean()))
    return np.array(values), (time.perf_counter() - started) / max(len(prompts), 1)


def _lr() -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=5000))


def _trees() -> Any:
    return HistGradientBoostingClassifier(
        max_depth=3, learning_rate=0.05, max_iter=200, l2_regularization=1.0, random_state=0
    )


def _folds(data: Examples, name: str) -> list[np.ndarray]:
    index = np.flatnonzero(data.benchmarks() == name)
    if name == "mmlu":
        split = GroupKFold(5, shuffle=True, random_state=0).split(index, groups=data.groups[index])
    else:
        split = KFold(5, shuffle=True, random_state=0).split(index)
    return [index[test] for _, test in split]


def cpt(
    data: Examples,
    features: np.ndarray,
    make: Callable[[], Any],
    name: str,
    *,
    same_benchmark: bool,
    rows: np.ndarray | None = None,
) -> tuple[float, float]:
    """CPT(50%) and APGR of out-of-fold scores on benchmark `name` (optionally only `rows`,
    a mask of the rows whose features exist)."""
    bench = data.benchmarks()
    usable = np.ones(len(data), bool) if rows is None else rows
    index = np.flatnonzero((bench == name) & usable)
    score = np.zeros(len(data))
    for fold in _folds(data, name):
        test = fold[usable[fold]]
        train = usable.copy()
        train[test] = False
        if same_benchmark:
            train &= bench == name
        model = make().fit(features[train], data.weak[train])
        score[test] = model.predict_proba(features[test])[:, 1]
    routed = curve(-score[index], data.weak[index], data.strong[index])  # type: ignore[index]
    return routed.cpt(0.5), routed.apgr()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--likelihood", action="store_true")
    args = parser.parse_args()
    data = load_examples(default_root() / "routellm_labels", WEAK, STRONG)
    base = np.array([prompt_features(p) for p in data.prompts])
    started = time.perf_counter()
    extra = np.array([extra_features(p) for p in data.prompts])
    extra_us = (time.perf_counter() - started) / len(data) * 1e6
    both = np.hstack([base, extra])
    variants: list[tuple[str, np.ndarray, Callable[[], Any], bool, str]] = [
        ("features + LR, both benchmarks (bundled recipe)", base, _lr, False, "—"),
        ("features + LR, own benchmark only", base, _lr, True, "—"),
        ("features + extra + LR, both", both, _lr, False, f"~{extra_us:.0f} µs"),
        ("features + extra + LR, own benchmark only", both, _lr, True, f"~{extra_us:.0f} µs"),
        ("features + extra + boosted trees, both", both, _trees, False, f"~{extra_us:.0f} µs"),
        ("features + extra + boosted trees, own only", both, _trees, True, f"~{extra_us:.0f} µs"),
    ]
    table = []
    for label, features, make, same, cost in variants:
        mmlu = cpt(data, features, make, "mmlu", same_benchmark=same)
        gsm8k = cpt(data, features, make, "gsm8k", same_benchmark=same)
        table.append([label, f"{mmlu[0]:.3f}", f"{gsm8k[0]:.3f}", f"{gsm8k[1]:.3f}", cost])
        print(table[-1], flush=True)
    if args.likelihood:
        gsm = data.benchmarks() == "gsm8k"
        values, seconds = likelihood([p for p, g in zip(data.prompts, gsm, strict=True) if g])
        column = np.zeros((len(data), 1))
        column[gsm, 0] = values
        with_ll = np.hstack([both, column])
        result = cpt(data, with_ll, _lr, "gsm8k", same_benchmark=True, rows=gsm)
        table.append(
            [
                "features + extra + prompt log-likelihood + LR, own only",
                "—",
                f"{result[0]:.3f}",
                f"{result[1]:.3f}",
                f"~{seconds * 1000:.0f} ms (a prompt evaluation with logits for every position)",
            ]
        )
        print(table[-1], flush=True)
    append_results(
        "(o) Strong-vs-weak router variants, held-out folds (CPT(50%): lower is better)",
        ["variant", "MMLU unseen subjects", "GSM8K", "GSM8K APGR", "extra cost per request"],
        table,
        notes="bench/router_variants.py, routellm_labels (Mixtral-8x7B vs GPT-4-1106): MMLU in "
        "5 folds of whole subjects, GSM8K in 5 folds of rows (as bench/router_quality.py). "
        "Random: CPT(50%) 0.500, APGR 0.500. Targets of issue 17: MMLU <= 0.33, GSM8K <= 0.35.",
    )


if __name__ == "__main__":
    main()
