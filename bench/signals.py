"""Benchmark (n): which signals tell a right local answer from a wrong one — per benchmark,
not only pooled — on the rows the bundled acceptance model never saw.

    python bench/signals.py

Rows: the bundled label run (classifiers/artifacts/labels-smollm2-135m-q4_1.jsonl, the
bundled model's answers to 2,400 benchmark questions, graded). Held out: the rows the bundled
acceptance model's training left out (its metadata). Signals, each scored by AUROC for "the
answer is correct" within each benchmark and pooled:

- mean_prob, min_prob, first-token prob: from the answer's own token log-probabilities
  (what serving computes anyway);
- the bundled acceptance model (answer and prompt features + those log-probabilities);
- prompt log-likelihood: the mean log-probability of the prompt's tokens under the small
  model (how familiar the question looks to it);
- first-token entropy: the entropy of the model's distribution over the answer's first
  token (negated: a sure start scores high);
- a refit: the acceptance features plus the two model signals, logistic regression fitted
  on the training rows (the same split).

Cost per request, measured here: a prompt evaluation with logits for every position (what
the prompt log-likelihood needs) against one with the last row only (what serving does);
the first-token entropy comes from the last row serving computes anyway. Run it on an idle
machine: the timing is in the same process as the signals (~30 min on 2 cores).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import append_results
from classifiers.artifacts import bundled_path, load_acceptance
from classifiers.examples import prompt_id
from classifiers.features import acceptance_features
from classifiers.metrics import auroc
from router.backends.local_llama import bundled_model_path

LABELS = Path("classifiers/artifacts/labels-smollm2-135m-q4_1.jsonl")
BENCHMARKS = ("gsm8k", "svamp", "arc-easy", "arc-challenge", "mmlu", "nq")


def _chatml(prompt: str) -> bytes:
    return f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n".encode()


def model_signals(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(prompt log-likelihood, -first-token entropy) per row, and the mean seconds of a
    prompt evaluation with logits for every position and with the last row only."""
    import llama_cpp

    every = llama_cpp.Llama(
        str(bundled_model_path()), n_ctx=2048, logits_all=True, verbose=False, n_threads=2
    )
    last = llama_cpp.Llama(
        str(bundled_model_path()), n_ctx=2048, logits_all=False, verbose=False, n_threads=2
    )
    likelihood, sureness, all_rows_s, last_row_s = [], [], [], []
    for row in rows:
        tokens = every.tokenize(_chatml(row["prompt"]), add_bos=False, special=True)[:2000]
        every.reset()
        started = time.perf_counter()
        every.eval(tokens)
        all_rows_s.append(time.perf_counter() - started)
        logits = np.asarray(every.scores[: len(tokens)], dtype=np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        logsoft = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        picked = logsoft[np.arange(len(tokens) - 1), tokens[1:]]
        likelihood.append(float(picked.mean()))
        final = np.exp(logsoft[-1])
        sureness.append(float((final * logsoft[-1]).sum()))  # -entropy
        if len(last_row_s) < 200:
            last.reset()
            started = time.perf_counter()
            last.eval(tokens)
            last_row_s.append(time.perf_counter() - started)
    return (
        np.array(likelihood),
        np.array(sureness),
        float(np.mean(all_rows_s)),
        float(np.mean(last_row_s)),
    )


def main() -> None:
    rows = [json.loads(line) for line in LABELS.read_text().splitlines()]
    metadata = json.loads(bundled_path("acceptance").with_suffix(".json").read_text())
    held_ids = set(metadata["held_out"]["prompts"])
    held = np.array([prompt_id(r["prompt"]) in held_ids for r in rows])
    correct = np.array([bool(r["correct"]) for r in rows])
    datasets = np.array([r["dataset"] for r in rows])
    logprobs = [
        json.loads(r["logprobs"]) if isinstance(r["logprobs"], str) else r["logprobs"] for r in rows
    ]
    started = time.perf_counter()
    likelihood, sureness, every_s, last_s = model_signals(rows)
    print(f"model signals for {len(rows)} rows in {time.perf_counter() - started:.0f} s")
    acceptance = load_acceptance()
    signals: dict[str, np.ndarray] = {
        "mean_prob": np.array([math.exp(np.mean(lp)) if lp else 0.0 for lp in logprobs]),
        "min_prob": np.array([math.exp(min(lp)) if lp else 0.0 for lp in logprobs]),
        "first-token prob": np.array([math.exp(lp[0]) if lp else 0.0 for lp in logprobs]),
        "acceptance model (bundled)": np.array(
            [
                acceptance.score(r["prompt"], r["answer"], lp, r["finish_reason"])
                for r, lp in zip(rows, logprobs, strict=True)
            ]
        ),
        "prompt log-likelihood": likelihood,
        "first-token entropy (negated)": sureness,
    }
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    features = np.array(
        [
            [*acceptance_features(r["prompt"], r["answer"], lp, r["finish_reason"]), ll, s]
            for r, lp, ll, s in zip(rows, logprobs, likelihood, sureness, strict=True)
        ]
    )
    scale = StandardScaler().fit(features[~held])
    refit = LogisticRegression(C=0.3, max_iter=5000).fit(
        scale.transform(features[~held]), correct[~held]
    )
    signals["refit: acceptance features + both model signals"] = refit.predict_proba(
        scale.transform(features)
    )[:, 1]
    table = []
    for name, values in signals.items():
        cells = []
        for benchmark in BENCHMARKS:
            mask = held & (datasets == benchmark)
            positives = correct[mask]
            cells.append(
                f"{auroc(values[mask], positives):.2f}" if 0 < positives.sum() < mask.sum() else "—"
            )
        cells.append(f"**{auroc(values[held], correct[held]):.3f}**")
        table.append([name, *cells])
    counts = []
    for benchmark in BENCHMARKS:
        mask = held & (datasets == benchmark)
        counts.append(f"{benchmark} {int(mask.sum())} ({int(correct[mask].sum())} right)")
    print(table)
    append_results(
        "(n) Acceptance signals: AUROC per benchmark and pooled, held-out rows",
        ["signal", *BENCHMARKS, "pooled"],
        table,
        notes="bench/signals.py. The bundled label run (SmolLM2-135M Q4_1's answers, graded), "
        "the rows the bundled acceptance model's training left out: "
        + ", ".join(counts)
        + ". AUROC for 'the answer is correct' (— where a benchmark's held-out rows are all "
        "wrong). Cost of the prompt log-likelihood: a prompt evaluation with logits for every "
        f"position took {every_s * 1000:.1f} ms on average against {last_s * 1000:.1f} ms for "
        "the last row only (what serving computes; the first-token entropy comes from that row).",
    )


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parents[1])
    main()
