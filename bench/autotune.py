"""Benchmark (m''): does shadow.autotune find the threshold a label calibration would, and
how fast, from a wrong start?

    python bench/autotune.py

Rows: the bundled label run's short-answer questions (ARC-Easy, ARC-Challenge, MMLU, NQ: the
bundled model's real answers, graded against gold). Each row stands for one request checked
by the shadow runner against a gold-answer reference: its acceptance value (mean token
probability of the answer) and whether it agreed (= it was right). A seeded 70% is the
traffic, fed in order to the server's own `Tuner` (router/shadow/autotune.py, the code that
serves) with the given bounds; 30% is held out. Reported per start and target: the
threshold it settles on, after how many changes and checks it came within 0.02 of the
threshold calibrated on every traffic row's label at once, and the held-out quality and
escalation share at both.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from bench.common import append_results
from classifiers.calibrate import calibrate
from router.policy.model import AcceptanceSpec, AutotuneSpec
from router.shadow.autotune import Observed, Tuner

LABELS = Path("classifiers/artifacts/labels-smollm2-135m-q4_1.jsonl")
SHORT = ("arc-easy", "arc-challenge", "mmlu", "nq")
BOUNDS = AutotuneSpec(
    min_threshold=0.0, max_threshold=1.0, min_checks=200, window=2000, every_checks=50
)


def rows() -> tuple[np.ndarray, np.ndarray]:
    values, right = [], []
    for line in LABELS.read_text().splitlines():
        row = json.loads(line)
        if row["dataset"] not in SHORT:
            continue
        logprobs = row["logprobs"]
        logprobs = json.loads(logprobs) if isinstance(logprobs, str) else logprobs
        values.append(math.exp(float(np.mean(logprobs))) if logprobs else 0.0)
        right.append(bool(row["correct"]))
    return np.array(values), np.array(right)


def routed(values: np.ndarray, right: np.ndarray, threshold: float) -> tuple[float, float]:
    escalated = values < threshold
    return float(np.where(escalated, True, right).mean()), float(escalated.mean())


def main() -> None:
    values, right = rows()
    order = np.random.default_rng(0).permutation(len(values))
    cut = int(0.7 * len(order))
    traffic, held = order[:cut], order[cut:]
    table = []
    for target in (0.8, 0.9):
        labelled = calibrate(
            values[traffic], right[traffic], np.ones(len(traffic), bool), quality=target
        ).threshold
        for start in (0.1, 0.9):
            tuner = Tuner(lambda _: None, lambda _: None)
            spec = AcceptanceSpec(method="mean_prob", threshold=start)
            changes, reached = 0, None
            for seen, i in enumerate(traffic, start=1):
                check = Observed(
                    "auto", "small", float(values[i]), bool(right[i]), spec, BOUNDS, target, "bench"
                )
                change = tuner.observe(check)
                changes += change is not None
                now = tuner.acceptance("auto", "small", spec, BOUNDS).threshold
                if reached is None and abs(now - labelled) <= 0.02:
                    reached = seen
            final = tuner.acceptance("auto", "small", spec, BOUNDS).threshold
            tuned_q, tuned_e = routed(values[held], right[held], final)
            label_q, label_e = routed(values[held], right[held], labelled)
            table.append(
                [
                    f"{target}",
                    f"{start}",
                    f"{final:.4f}",
                    f"{labelled:.4f}",
                    str(changes),
                    "—" if reached is None else f"{reached:,}",
                    f"{tuned_q:.3f} / {tuned_e:.1%}",
                    f"{label_q:.3f} / {label_e:.1%}",
                ]
            )
            print(table[-1], flush=True)
    append_results(
        "(m'') autotune from a wrong start: where it settles against a label calibration",
        [
            "target",
            "start",
            "tuned threshold",
            "label-calibrated",
            "changes",
            "checks until within 0.02",
            "held-out quality / escalated, tuned",
            "same, label-calibrated",
        ],
        table,
        notes=f"bench/autotune.py: {len(traffic):,} traffic rows and {len(held):,} held out "
        "(the bundled model's answers to ARC-Easy, ARC-Challenge, MMLU and NQ questions, "
        "graded), fed to the serving Tuner with min_checks 200, window 2,000, every_checks 50, "
        "max_step 0.05, bounds 0-1. Agreement with a gold reference = correctness, as in the "
        "labelled-traffic test.",
    )


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parents[1])
    main()
