"""Shadow checks measure what they claim: labelled traffic (benchmark questions with short
answers) through `cascade serve` with the bundled model as the local tier and, as the
reference tier, an upstream answering with each question's gold answer. Every request is
checked (rate 1): accepted answers against the reference, rejected ones against the answer
served; the audit's estimate of the served local answers' accuracy matches their true
accuracy (graded against the gold answers) within its interval, and `cascade classify
calibrate --from-ledger` turns the checks into a threshold."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from classifiers.grading import grade
from tests.support.cascade import StartCascade, audit_report
from tests.support.shadow_traffic import drive, items, policy, start_gold

CLASSIFY = [sys.executable, "-m", "router", "classify", "calibrate"]


def test_the_audit_estimates_the_served_local_answers_true_accuracy(
    start_cascade: StartCascade, tmp_path: Path
) -> None:
    found = items(per_dataset=25, seed=7)
    gold = start_gold(found, tmp_path)
    try:
        cascade = start_cascade(policy(gold, threshold=0.45, rate=1.0))
        served = drive(cascade.url, found)
        deadline = time.monotonic() + 120
        while len(checks := [r for r in cascade.records() if r.get("kind") == "shadow"]) < len(
            served
        ):
            assert time.monotonic() < deadline, f"{len(checks)} of {len(served)} checks"
            time.sleep(0.2)
    finally:
        gold.stop()
    local = [s for s in served if s.tier == "small"]
    escalated = [s for s in served if s.tier == "large"]
    assert local and escalated  # the threshold splits the traffic
    kinds = {check["shadow_of"]: check["local_outcome"] for check in checks}
    assert all(kinds[s.request_id] == "accepted" for s in local)
    assert all(kinds[s.request_id] == "escalated" for s in escalated)
    truth = sum(grade(s.item.kind, s.text, s.item.gold) for s in local) / len(local)
    report = audit_report(cascade.ledger, "route")
    quality = report["groups"][0]["local_quality"]
    low, high = quality["interval_95"]
    assert quality["checks"] == len(local)  # every gold answer is comparable
    assert low <= truth <= high, (truth, quality)
    assert abs(quality["estimate"] - truth) <= 0.05
    assert quality["escalated"]["checks"] == len(escalated)
    calibrated = subprocess.run(
        [*CLASSIFY, "--from-ledger", cascade.ledger, "--route", "auto", "--target-quality", "0.9"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if calibrated.returncode != 0:  # the bundled model may not reach 0.9 at any threshold
        assert "no threshold reaches quality 0.9" in calibrated.stderr
        pytest.skip("the bundled model cannot reach 0.9 on this sample")
    conclusive = [c for c in checks if c["verdict"] in ("agree", "disagree")]
    assert f"from {len(conclusive)} shadow checks" in calibrated.stdout
