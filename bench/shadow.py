"""Benchmark (m): shadow checks — what they cost the client, and whether thresholds
calibrated from them are as good as thresholds calibrated on graded labels.

    python bench/shadow.py [--per-dataset 200] [--latency-requests 120]

Traffic: benchmark questions with short answers (ARC-Easy, ARC-Challenge, MMLU, NQ); the
bundled model as the local tier (accepted at mean token probability ≥ 0.45), and as the
reference tier an upstream answering each question with its gold answer
(tests/support/gold_upstream.py).

1. Latency: the same requests with shadow checks at rate 1 and off, alternated twice; p50
   and p95 of the client's latency. Then a run with a daily cap for ~10 checks: how many ran.
2. Calibration: the rows are split 3:1 (seeded). The calibration part goes through
   `cascade serve` with every request checked; `calibrate --from-ledger`'s method picks a
   threshold for a target quality from the ledger's checks. The same rows graded against
   their gold answers (the local tier run directly, mean token probability as in serving)
   give the threshold calibrated on labels. Both thresholds are scored on the held-out rows:
   routed quality (an escalated request is answered by the reference, taken as correct).
   Target: within 2 points of each other.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from pathlib import Path

import numpy as np
import requests

from bench.common import WORK, append_results
from classifiers.calibrate import calibrate
from classifiers.datasets import Item
from classifiers.grading import grade
from router.backends.base import GenerationParams, Message, Prompt
from router.backends.local_llama import LlamaCppTier, LocalLlamaBackend
from router.confidence import score
from router.shadow.calibrate import ledger_checks
from tests.support.processes import ServerProcess, start_cascade
from tests.support.shadow_traffic import drive, items, policy, start_gold

THRESHOLD = 0.45
TARGETS = (0.8, 0.9)


def _latency(url: str, found: list[Item]) -> list[float]:
    taken = []
    with requests.Session() as session:
        for item in found:
            body = {
                "model": "auto",
                "messages": [{"role": "user", "content": item.prompt}],
                "max_tokens": item.max_tokens,
                "temperature": 0,
            }
            started = time.perf_counter()
            response = session.post(f"{url}/v1/chat/completions", json=body, timeout=120)
            response.raise_for_status()
            taken.append((time.perf_counter() - started) * 1000)
    return taken


def _shadow_count(url: str, result: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("cascade_shadow_checks_total") and f'result="{result}"' in line
    )


def latency(found: list[Item]) -> list[list[str]]:
    gold = start_gold(found, WORK)
    rows = []
    try:
        samples: dict[float, list[float]] = {0.0: [], 1.0: []}
        for rate in (1.0, 0.0, 0.0, 1.0):
            folder = WORK / f"shadow-latency-{rate}"
            folder.mkdir(exist_ok=True)
            (folder / "policy.yaml").write_text(policy(gold, threshold=THRESHOLD, rate=rate))
            server = start_cascade(folder / "policy.yaml", "none", folder / "server.log")
            try:
                _latency(server.url, found[:5])  # warm
                samples[rate] += _latency(server.url, found)
            finally:
                server.stop()
        for rate, taken in samples.items():
            ordered = sorted(taken)
            rows.append(
                [
                    "on (rate 1)" if rate else "off",
                    str(len(taken)),
                    f"{statistics.median(taken):.1f}",
                    f"{ordered[int(0.95 * (len(ordered) - 1))]:.1f}",
                ]
            )
        rows.append(capped_day(gold, found))
    finally:
        gold.stop()
    return rows


def capped_day(gold: ServerProcess, found: list[Item]) -> list[str]:
    """60 accepted answers against a day's cap of about 20 checks at their real cost (each
    check holds its maximum until that is known)."""
    folder = WORK / "shadow-cap"
    folder.mkdir(exist_ok=True)
    cap = 5e-4
    (folder / "policy.yaml").write_text(policy(gold, threshold=0.0, rate=1.0, usd_per_day=cap))
    server = start_cascade(folder / "policy.yaml", "none", folder / "server.log")
    try:
        _latency(server.url, found[:60])
        time.sleep(2)
        ran = sum(_shadow_count(server.url, r) for r in ("agree", "disagree", "inconclusive"))
        capped = _shadow_count(server.url, "capped")
    finally:
        server.stop()
    return [f"cap ${cap:g}/day, 60 accepted answers", f"{ran:.0f} ran", f"{capped:.0f} capped", ""]


async def _graded(found: list[Item]) -> tuple[np.ndarray, np.ndarray]:
    """The local tier's mean-probability confidence and correctness on each row."""
    backend = await LocalLlamaBackend.load(
        "small", LlamaCppTier(type="llama_cpp", kv_cache_type="q8_0")
    )
    values, correct = [], []
    try:
        for item in found:
            prompt = Prompt(messages=(Message("user", item.prompt),))
            answer = await backend.complete(
                prompt, GenerationParams(item.max_tokens, temperature=0.0)
            )
            values.append(score("mean_prob", answer.token_logprobs, THRESHOLD).value)
            correct.append(grade(item.kind, answer.text, item.gold))
    finally:
        await backend.aclose()
    return np.array(values), np.array(correct)


def _routed(values: np.ndarray, correct: np.ndarray, threshold: float) -> tuple[float, float]:
    """(routed quality, escalated share) at `threshold` (the reference taken as correct)."""
    kept = values >= threshold
    return float(np.where(kept, correct, True).mean()), float((~kept).mean())


def calibration(found: list[Item]) -> list[list[str]]:
    shuffled = found[:]
    random.Random(11).shuffle(shuffled)
    cut = len(shuffled) * 3 // 4
    part, held = shuffled[:cut], shuffled[cut:]
    gold = start_gold(found, WORK)
    folder = WORK / "shadow-calibration"
    folder.mkdir(exist_ok=True)
    ledger = f"sqlite:///{folder / 'ledger.db'}"
    Path(folder / "ledger.db").unlink(missing_ok=True)
    (folder / "policy.yaml").write_text(policy(gold, threshold=THRESHOLD, rate=1.0))
    server = start_cascade(folder / "policy.yaml", ledger, folder / "server.log")
    try:
        drive(server.url, part)
        time.sleep(3)  # the last checks
    finally:
        server.stop()
        gold.stop()
    checks = ledger_checks(ledger, "auto")
    values_part, correct_part = asyncio.run(_graded(part))
    values_held, correct_held = asyncio.run(_graded(held))
    rows = []
    for target in TARGETS:
        from_ledger = calibrate(
            checks.scores, checks.agree, np.ones(len(checks), dtype=bool), quality=target
        )
        from_labels = calibrate(
            values_part, correct_part, np.ones(len(part), dtype=bool), quality=target
        )
        ledger_quality, ledger_share = _routed(values_held, correct_held, from_ledger.threshold)
        label_quality, label_share = _routed(values_held, correct_held, from_labels.threshold)
        rows.append(
            [
                f"{target:.2f}",
                f"{len(checks)} ({checks.kinds['accepted']} accepted, "
                f"{checks.kinds['escalated']} escalated)",
                f"{from_ledger.threshold:.4f} → {ledger_quality:.3f} / {ledger_share:.1%}",
                f"{from_labels.threshold:.4f} → {label_quality:.3f} / {label_share:.1%}",
                f"**{abs(ledger_quality - label_quality) * 100:.1f}**",
            ]
        )
    local_accuracy = float(correct_held.mean())
    print(f"held-out local accuracy {local_accuracy:.3f} over {len(held)} rows")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-dataset", type=int, default=200)
    parser.add_argument("--latency-requests", type=int, default=120)
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    found = items(args.per_dataset, seed=3)
    latency_rows = latency(found[: args.latency_requests])
    print(latency_rows)
    append_results(
        "(m) Shadow checks: the client's latency with checks at rate 1 vs off",
        ["shadow checks", "requests", "p50 ms", "p95 ms"],
        latency_rows,
        notes="bench/shadow.py. The bundled model (accepted at mean probability ≥ 0.45), a "
        "gold-answer upstream as the reference tier, sequential requests (ARC, MMLU, NQ "
        "questions), two runs of each setting alternated. The last row: a daily cap for about "
        "20 checks at their real cost, and 60 accepted answers.",
    )
    calibration_rows = calibration(found)
    print(calibration_rows)
    append_results(
        "(m') Thresholds from shadow checks vs from graded labels",
        [
            "target quality",
            "conclusive checks in the ledger",
            "from the ledger: threshold → held-out quality / escalated",
            "from graded labels: threshold → held-out quality / escalated",
            "difference (points)",
        ],
        calibration_rows,
        notes="bench/shadow.py. 3/4 of the rows through cascade serve with every request "
        "shadow-checked (accepted answers against the gold upstream, escalated ones against "
        "the answer served); the same rows graded against gold give the label threshold. "
        "Both scored on the held-out 1/4 (escalated = answered correctly by the reference). "
        "Target: within 2 points.",
    )


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parents[1])
    main()
