"""Long fuzz runs (the tests run a few thousand cases; this runs many more):
the malformed-request corpus and schemathesis against a live cascade, no 5xx allowed.

    python bench/fuzz.py [--corpus 50000] [--examples 3000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from bench.common import append_results

ROOT = Path(__file__).resolve().parents[1]


def run(test: str, env: dict[str, str]) -> tuple[bool, str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    return result.returncode == 0, summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=int, default=50_000)
    parser.add_argument("--examples", type=int, default=3_000)
    args = parser.parse_args()
    rows = []
    for name, test, env in (
        (
            f"malformed corpus, {args.corpus:,} requests + raw frames",
            "tests/integration/test_malformed.py",
            {"CASCADE_FUZZ_REQUESTS": str(args.corpus)},
        ),
        (
            f"schemathesis, {args.examples:,} examples per operation",
            "tests/integration/test_schemathesis.py",
            {"CASCADE_FUZZ_EXAMPLES": str(args.examples)},
        ),
    ):
        ok, summary = run(test, env)
        print(name, summary, flush=True)
        rows.append([name, "**no 5xx**" if ok else "**FAILED**", summary])
    append_results(
        "(h) Fuzzing",
        ["run", "result", "pytest"],
        rows,
        notes="Requests generated from tests/support/corpus.py and the OpenAPI "
        "document (docs/openapi.json), against a live cascade with a fake upstream.",
    )


if __name__ == "__main__":
    main()
