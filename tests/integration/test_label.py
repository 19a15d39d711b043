"""`cascade classify label` with the real local tier: graded rows, resumable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(out: Path, limit: int) -> str:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "router",
            "classify",
            "label",
            "--policy",
            str(REPO / "policies/default.yaml"),
            "--datasets",
            "arc-easy,nq",
            "--limit",
            str(limit),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout


def test_label_writes_graded_rows_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    assert "labeled 2 new items" in run(out, 1)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["dataset"] for r in rows] == ["arc-easy", "nq"]
    for row in rows:
        assert isinstance(row["correct"], bool)
        assert row["completion_tokens"] == len(row["logprobs"]) > 0
        assert row["features"]["n"] == row["completion_tokens"]
        assert row["features"]["min"] <= row["features"]["mean"] <= 0
        assert row["finish_reason"] in {"stop", "length"}
    # a bigger sample of the same seed contains the first: only the new items run
    assert "labeled 2 new items" in run(out, 2)
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 4
