"""Benchmark (u): does `cascade policy simulate` predict what a candidate policy does?

    python bench/simulate.py [--per-dataset 260] [--records 1000000]

1. Against reality: labelled traffic (ARC-Easy, ARC-Challenge, MMLU, NQ questions; the
   bundled model as the local tier, the gold-answer upstream as the large one and the shadow
   reference) from three teams goes through `cascade serve` under policy A; `simulate`
   predicts candidate B from A's ledger (a higher threshold, a rule that moves team beta to
   the large tier alone, a budget that degrades team gamma); the same traffic is then served
   under B. Predicted against actual: cost, share answered locally and escalations, in total
   and per team (target: within 3%, and within the stated interval), and the local answers'
   quality from shadow checks (target: within its interval).
2. Scale: `cascade policy simulate` over a synthetic ledger of `--records` requests
   (bench/gen_ledger.py) with a changed threshold; wall time and peak RSS of the process and
   its workers (target: 1M in <= 60 s, memory bounded).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.common import WORK, append_results
from tests.support.shadow_traffic import items
from tests.support.simulate_traffic import check_again, predict_and_run, rows

CANDIDATE = """
tiers:
  small: {type: llama_cpp, price: {input_per_1m: 0.01, output_per_1m: 0.02}}
  large:
    type: openai
    api_base: "http://127.0.0.1:9/v1"
    model: gpt-4o-mini
    price: {input_per_1m: 0.15, output_per_1m: 0.60}
routes:
  auto:
    cascade:
      - {tier: small, acceptance: {method: mean_prob, threshold: 0.6}}
      - {tier: large}
default_route: auto
teams:
  search:
    limits: {usd_per_day: 5.0}
    budget_routing: {degrade_at: 0.8}
"""


def reality(per_dataset: int, again: bool) -> None:
    folder = WORK / "simulate"
    found = items(per_dataset)
    started = time.perf_counter()
    check = check_again(folder) if again else predict_and_run(found, folder)
    minutes = (time.perf_counter() - started) / 60
    skipped = check.predicted["not_replayed"]
    took = (
        "Simulated again on the traffic of an earlier run (--again)."
        if again
        else f"{minutes:.1f} min in all."
    )
    append_results(
        "(u) policy simulate: predicted vs actual",
        [
            "figure",
            "predicted from A's ledger (95% interval)",
            "actual under B",
            "off by",
            "actual in the interval",
        ],
        rows(check),
        notes=(
            f"{len(found):,} labelled requests (ARC-Easy, ARC-Challenge, MMLU, NQ; "
            f"{per_dataset} each) from teams alpha, beta, gamma in turn through `cascade "
            "serve`: the bundled model kept at mean_prob >= 0.45, else the gold-answer "
            "upstream (A). Candidate B: threshold 0.6, a rule sending team beta to the "
            "large tier alone, team gamma degraded to the local tier once it has spent a "
            "share of its day's budget. Predicted: `simulate` of B on A's ledger; actual: "
            f"the same traffic served under B. Not replayed: {skipped['requests']}. Shadow "
            f"checks at rate 0.3 give the quality. {took}"
        ),
    )


def _timed(ledger: Path, candidate: Path, out: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MiB, the largest of the process and its workers) of one
    `cascade policy simulate` over `ledger`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable, "-m", "router", "policy", "simulate", "--ledger", f"sqlite:///{ledger}",
            "--policy", str(candidate), "--format", "json", "--out", str(out),
        ],
        check=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    return seconds, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


def scale(records: int) -> None:
    folder = WORK / "simulate-scale"
    folder.mkdir(parents=True, exist_ok=True)
    ledger = folder / f"ledger-{records}.db"
    if not ledger.exists():
        generate = ["bench/gen_ledger.py", "--records", str(records), "--out", str(ledger)]
        subprocess.run([sys.executable, *generate], check=True)
    rows = []
    threshold = CANDIDATE.split("teams:", maxsplit=1)[0]
    for name, text in (
        ("threshold 0.55 -> 0.6", threshold),
        ("and a budget on `search`", CANDIDATE),
    ):
        candidate = folder / "candidate.yaml"
        candidate.write_text(text)
        seconds, peak = _timed(ledger, candidate, folder / "report.json")
        rows.append([f"{records:,}", name, f"**{seconds:.1f}**", f"{peak:.0f}", "<= 60 s"])
    append_results(
        "(u) policy simulate: scale",
        ["records", "candidate", "seconds", "peak RSS MiB (largest process)", "target"],
        rows,
        notes=(
            "`cascade policy simulate --format json` on a SQLite ledger from "
            "bench/gen_ledger.py (14 days, 5 teams, shadow checks), the whole command timed "
            "(Python start included). Two passes; the second split among forked processes, "
            "one per CPU: requests of one budget window (a team's UTC day) replay in order "
            "in one process. The busiest team (`search`) sends 56% of the requests."
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-dataset", type=int, default=260)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--skip-reality", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument(
        "--again",
        action="store_true",
        help="simulate the traffic of the last run again (bench/.work/simulate), not serve it",
    )
    args = parser.parse_args()
    if not args.skip_reality:
        reality(args.per_dataset, args.again)
    if not args.skip_scale:
        scale(args.records)


if __name__ == "__main__":
    main()
