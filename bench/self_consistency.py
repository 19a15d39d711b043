"""Benchmark (n''): self-consistency (AutoMix-style agreement of a few sampled answers) as a
signal that the local answer is right — per benchmark, with its cost.

    python bench/self_consistency.py [--samples 3] [--temperature 0.7] [--negatives 100]

Rows: the bundled label run (the bundled model's greedy answers to benchmark questions,
graded). The signal needs no training, so every row can be used; to keep the run short each
benchmark keeps all its right answers and a seeded sample of its wrong ones (AUROC is a rank
statistic over right/wrong pairs: sampling one class leaves it unbiased). For each row the
bundled model answers the same prompt `--samples` more times at `--temperature` with the
label run's token budget for that benchmark; the signal is the share of those samples that
say what the greedy (served) answer says, compared as the label run grades: the final number
(GSM8K, SVAMP), the option letter (ARC, MMLU), else the shadow checks' `normalized` judge
(NQ). Beside it, on the same rows, the signals serving has for free (mean and min token
probability). Cost: the seconds the samples took
per row against the greedy answer's own latency in the label run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import append_results
from classifiers.grading import extract_letter, extract_number
from classifiers.metrics import auroc
from router.backends.local_llama import bundled_model_path
from router.shadow.judges import normalized

LABELS = Path("classifiers/artifacts/labels-smollm2-135m-q4_1.jsonl")
BENCHMARKS = ("gsm8k", "svamp", "arc-easy", "arc-challenge", "mmlu", "nq")


def pick_rows(rows: list[dict[str, Any]], negatives: int, seed: int) -> list[dict[str, Any]]:
    """Every right answer and up to `negatives` wrong ones per benchmark (seeded)."""
    chosen: list[dict[str, Any]] = []
    rng = random.Random(seed)
    for benchmark in BENCHMARKS:
        mine = [r for r in rows if r["dataset"] == benchmark]
        right = [r for r in mine if r["correct"]]
        wrong = [r for r in mine if not r["correct"]]
        chosen += right + rng.sample(wrong, min(negatives, len(wrong)))
    return chosen


def same_answer(dataset: str, sample: str, greedy: str) -> bool:
    """Whether a sampled answer says what the greedy one says, by what the benchmark grades."""
    if dataset in ("gsm8k", "svamp"):
        ours, theirs = extract_number(sample), extract_number(greedy)
        return ours is not None and theirs is not None and abs(ours - theirs) < 1e-6
    if dataset in ("arc-easy", "arc-challenge", "mmlu"):
        letter = extract_letter(sample)
        return letter is not None and letter == extract_letter(greedy)
    return normalized(sample, greedy) == "agree"


def agreement(
    llama: Any, row: dict[str, Any], samples: int, temperature: float
) -> tuple[list[bool], list[float]]:
    """Whether each of `samples` sampled answers agrees with the row's greedy answer, and
    the seconds each took."""
    limit = _BUDGETS[row["dataset"]]
    agree, seconds = [], []
    for _ in range(samples):
        started = time.perf_counter()
        out = llama.create_chat_completion(
            messages=[{"role": "user", "content": row["prompt"]}],
            temperature=temperature,
            top_p=0.95,
            max_tokens=limit,
            seed=random.getrandbits(31),
        )
        text = out["choices"][0]["message"]["content"] or ""
        agree.append(same_answer(row["dataset"], text, row["answer"]))
        seconds.append(time.perf_counter() - started)
    return agree, seconds


_BUDGETS = {"gsm8k": 256, "svamp": 192, "arc-easy": 24, "arc-challenge": 24, "mmlu": 24, "nq": 32}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--negatives", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import llama_cpp

    random.seed(args.seed)
    rows = pick_rows(
        [json.loads(line) for line in LABELS.read_text().splitlines()], args.negatives, args.seed
    )
    llama = llama_cpp.Llama(
        str(bundled_model_path()), n_ctx=2048, chat_format="chatml", verbose=False, n_threads=2
    )
    agrees, seconds = [], []
    started = time.perf_counter()
    for i, row in enumerate(rows):
        agree, took = agreement(llama, row, args.samples, args.temperature)
        agrees.append(agree)
        seconds.append(took)
        if i % 50 == 0:
            print(f"{i}/{len(rows)} rows, {time.perf_counter() - started:.0f} s", flush=True)
    logprobs = [
        json.loads(r["logprobs"]) if isinstance(r["logprobs"], str) else r["logprobs"] for r in rows
    ]
    votes, took = np.array(agrees, dtype=float), np.array(seconds)
    signals = {
        f"self-consistency, {k} sample{'s' * (k > 1)}": votes[:, :k].mean(axis=1)
        for k in sorted({1, (args.samples + 1) // 2, args.samples})
    }
    signals |= {
        "mean_prob (answer logprobs)": np.array(
            [math.exp(np.mean(lp)) if lp else 0.0 for lp in logprobs]
        ),
        "min_prob": np.array([math.exp(min(lp)) if lp else 0.0 for lp in logprobs]),
    }
    correct = np.array([bool(r["correct"]) for r in rows])
    datasets = np.array([r["dataset"] for r in rows])
    spent = took.sum(axis=1) / args.samples  # seconds per sample
    greedy = np.array([float(r["latency_ms"]) / 1000 for r in rows])
    table = []
    for name, values in signals.items():
        cells = [f"{auroc(values[datasets == b], correct[datasets == b]):.2f}" for b in BENCHMARKS]
        table.append([name, *cells, f"**{auroc(values, correct):.3f}**"])
    cost = [
        f"{b} {spent[datasets == b].mean():.2f} s a sample vs {greedy[datasets == b].mean():.2f} s"
        for b in BENCHMARKS
    ]
    counts = [
        f"{b} {int((datasets == b).sum())} ({int(correct[datasets == b].sum())} right)"
        for b in BENCHMARKS
    ]
    print(table, cost)
    append_results(
        "(n'') Self-consistency: AUROC per benchmark and pooled, with its cost",
        ["signal", *BENCHMARKS, "pooled"],
        table,
        notes=f"bench/self_consistency.py, temperature {args.temperature}, top_p 0.95, the "
        "label run's token budgets. The bundled label run, every right answer and a "
        f"seeded sample of {args.negatives} wrong ones per benchmark: "
        + ", ".join(counts)
        + ". Pooled AUROC is over this mix (it over-weights right answers against the label "
        "run's own mix; per-benchmark figures are unbiased). Cost per request: k samples are "
        "k more generations of the answer; seconds per sample against the greedy answer in "
        "the label run: " + "; ".join(cost) + ".",
    )


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parents[1])
    main()
