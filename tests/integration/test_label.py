"""`cascade classify label` with the real local tier: graded rows, resumable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(out: Path, limit: int, datasets: str = "arc-easy,nq") -> str:
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
            datasets,
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


def test_label_grades_a_teams_own_prompts(tmp_path: Path) -> None:
    own = tmp_path / "support_faq.jsonl"
    own.write_text(
        json.dumps({"prompt": "What is 2 + 2? Reply with the number only.", "gold": "4",
                    "kind": "numeric", "max_tokens": 8}) + "\n"
        + json.dumps({"id": "capital", "prompt": "What is the capital of France?",
                      "gold": ["Paris"], "kind": "text", "max_tokens": 16}) + "\n"
    )  # fmt: skip
    out = tmp_path / "labels.jsonl"
    assert "labeled 2 new items" in run(out, 10, str(own))
    rows = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"line-1", "capital"}
    for row in rows.values():
        assert row["dataset"] == "support_faq"
        assert row["completion_tokens"] == len(row["logprobs"]) > 0
    # graded by the same code as the benchmarks
    assert rows["capital"]["correct"] is ("paris" in rows["capital"]["answer"].lower())
