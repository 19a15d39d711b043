"""Fast scorer vs the estimator's predict_proba: per-prompt latency and agreement.

1,000 prompts from routellm_labels (MMLU and GSM8K), cut to at most 2,000 characters; each
scored one at a time, as a request would be.
"""

from __future__ import annotations

import time

import numpy as np

from bench.common import append_results
from classifiers import load
from classifiers.datasets import default_root
from classifiers.tables import load_table


def main() -> None:
    table = load_table(default_root() / "routellm_labels")
    rng = np.random.default_rng(0)
    prompts = [table.prompts[i][:2000] for i in rng.choice(len(table.prompts), 1000, False)]
    longest = [p for p in prompts if len(p) >= 1500]
    rows = []
    for name in ("prerouter", "routellm-mixtral-gpt4"):
        router = load(name)
        fast, slow, delta = [], [], 0.0
        for prompt in prompts:
            started = time.perf_counter()
            ours = router.score(prompt)
            fast.append(time.perf_counter() - started)
            started = time.perf_counter()
            theirs = router.estimator.predict_proba([prompt])[0, 1]
            slow.append(time.perf_counter() - started)
            delta = max(delta, abs(ours - theirs))
        long_fast = []
        for prompt in longest:
            started = time.perf_counter()
            router.score(prompt)
            long_fast.append(time.perf_counter() - started)
        p50_fast, p50_slow = np.median(fast) * 1e6, np.median(slow) * 1e6
        rows.append([
            name, f"{p50_fast:.1f}", f"{np.percentile(fast, 99) * 1e6:.1f}",
            f"{np.median(long_fast) * 1e6:.1f} ({len(longest)})", f"{p50_slow:.0f}",
            f"{p50_slow / p50_fast:.0f}x", f"{delta:.1e}",
        ])  # fmt: skip
    append_results(
        "Classifier scoring: fast scorer vs predict_proba, one prompt per call (µs)",
        [
            "model",
            ".score p50",
            ".score p99",
            ".score p50, prompts ≥ 1,500 chars (n)",
            "predict_proba p50",
            "speed-up",
            "max abs Δ",
        ],
        rows,
        "1,000 routellm_labels prompts cut to ≤ 2,000 characters.",
    )


if __name__ == "__main__":
    main()
