"""Run every benchmark; each appends a dated table to bench/RESULTS.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for script in (
        "bench/passthrough.py",
        "bench/local.py",
        "bench/memory.py",
        "bench/ledger.py",
        "bench/ledger_cpu.py",
        "bench/audit.py",
        "bench/classifier_speed.py",
        "bench/router_quality.py",
        "bench/soak.py",
        "bench/fuzz.py",
    ):
        subprocess.run([sys.executable, script], cwd=ROOT, env=env, check=True)
