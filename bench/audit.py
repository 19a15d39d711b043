"""Benchmark (e): `cascade audit` over generated SQLite ledgers of growing size.

Wall time and peak RSS of the whole command (`/usr/bin/time`-style, from the child's
rusage), for 100k, 300k and 1M records; target: 1M records in ≤ 30 s with bounded memory.
Ledgers are generated once by bench/gen_ledger.py into bench/.work/ and reused.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from bench.common import WORK, append_results


def ledger(records: int) -> Path:
    path = WORK / f"ledger-{records // 1000}k.db"
    if path.exists():
        with sqlite3.connect(path) as db:
            if db.execute("SELECT count(*) FROM records").fetchone()[0] == records:
                return path
    subprocess.run(
        [sys.executable, "bench/gen_ledger.py", "--records", str(records), "--out", str(path)],
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    return path


# A fresh parent per run, so RUSAGE_CHILDREN's peak is this audit's alone.
_MEASURE = """
import resource, subprocess, sys, time
started = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, capture_output=True)
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def run_audit(path: Path, by: str) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one `cascade audit --format json` process."""
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, sys.executable, "-m", "router", "audit",
         "--ledger", f"sqlite:///{path}", "--by", by, "--format", "json",
         "--out", str(WORK / "audit.json")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()  # fmt: skip
    return float(out[0]), int(out[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--by", default="team,route,tier,model,day")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        path = ledger(size)
        seconds, rss = run_audit(path, args.by)
        rows.append(
            [f"{size:,}", f"{path.stat().st_size / 2**20:,.0f}", f"**{seconds:.1f}**",
             f"{size / seconds:,.0f}", f"{rss:.0f}"]
        )  # fmt: skip
        print(rows[-1], flush=True)
    append_results(
        "(e) `cascade audit` over generated ledgers",
        ["records", "ledger MiB", "seconds", "records/s", "peak RSS MiB"],
        rows,
        notes=f"`cascade audit --by {args.by} --format json` on SQLite ledgers from "
        "bench/gen_ledger.py (14 days, 5 teams, 2 tiers). One streaming pass (plus the "
        "classifier scores of the previous window when --since is given); memory holds one "
        "group per key and bounded histograms, so it grows with the number of groups and "
        "hours, not with records. Peak RSS of the audit process. Target: 1M records in ≤ 30 s.",
    )


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parents[1])
    sys.path.insert(0, str(Path.cwd()))
    main()
