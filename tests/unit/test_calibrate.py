"""Thresholds from labeled rows, and the policy edit that leaves the rest of the file alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from classifiers.calibrate import calibrate
from router.policy.edit import PolicyEditError, policy_change, set_scalar, threshold_path
from router.shadow.calibrate import ledger_checks

SCORE = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
WEAK = np.array([0, 0, 1, 0, 1, 1, 1, 1, 1, 1], dtype=bool)
STRONG = np.ones(10, dtype=bool)


def test_target_strong_share() -> None:
    result = calibrate(SCORE, WEAK, STRONG, strong_share=0.3)
    assert result.threshold == pytest.approx(0.35)  # escalates 0.1, 0.2, 0.3
    assert result.strong_share == pytest.approx(0.3)
    assert result.quality == pytest.approx(0.9)  # only the 0.4 row stays wrong


def test_target_quality_takes_the_smallest_share() -> None:
    result = calibrate(SCORE, WEAK, STRONG, quality=1.0)
    assert result.strong_share == pytest.approx(0.4)
    assert result.threshold == pytest.approx(0.45)
    assert calibrate(SCORE, WEAK, STRONG, quality=0.7).strong_share == 0.0
    with pytest.raises(ValueError, match="no threshold"):
        calibrate(SCORE, WEAK, np.zeros(10, dtype=bool), quality=0.95)
    with pytest.raises(ValueError, match="one of"):
        calibrate(SCORE, WEAK, STRONG)


POLICY = """\
# a comment that must survive
routes:
  auto:
    classifier: {model: prerouter, threshold: 0.5}  # trailing comment
    cascade:
      - tier: small
        acceptance:
          method: learned
          model: acceptance
          threshold: 0.25
      - tier: large
"""


def test_set_scalar_changes_one_value_only(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    router = threshold_path(path, "auto", "router")
    assert router == ["routes", "auto", "classifier", "threshold"]
    updated, diff = policy_change(path, router, 0.125)
    assert updated == POLICY.replace("threshold: 0.5}", "threshold: 0.125}")
    assert (
        diff.count("\n-") == 1 and "+    classifier: {model: prerouter, threshold: 0.125}" in diff
    )
    acceptance = threshold_path(path, "auto", "acceptance")
    assert acceptance == ["routes", "auto", "cascade", 0, "acceptance", "threshold"]
    assert "threshold: 0.75\n" in set_scalar(POLICY, acceptance, 0.75, "p")
    with pytest.raises(PolicyEditError, match="no route"):
        threshold_path(path, "nope", "router")
    with pytest.raises(PolicyEditError, match="no 'cascade'"):
        set_scalar("routes: {auto: {}}", ["routes", "auto", "cascade"], 1.0, "p")


def test_from_the_ledger_feedback_on_local_answers_counts_beside_shadow_checks(
    tmp_path: Path,
) -> None:
    """`calibrate --from-ledger`: applications' good/bad on the route's local answers join
    the shadow checks, each at the acceptance value its request recorded; a remote answer's
    feedback, another route's, or a `neither`, does not."""
    records: list[dict[str, object]] = []
    for i, value in enumerate((0.9, 0.8, 0.7)):
        records.append(
            {
                "kind": "shadow", "request_id": f"s{i}", "shadow_of": f"c{i}", "route": "auto",
                "local_tier": "small", "local_outcome": "accepted", "verdict": "agree",
                "local_confidence": value, "ts": "2026-12-01T10:00:00.000Z",
            }
        )  # fmt: skip

    def request(rid: str, value: float, local: bool = True) -> dict[str, object]:
        attempt = {
            "tier": "small" if local else "large", "local": local, "outcome": "accepted",
            "confidence": {"method": "mean_prob", "value": value, "threshold": 0.5},
        }  # fmt: skip
        return {"request_id": rid, "route": "auto", "attempts": [attempt],
                "ts": "2026-12-01T10:00:01.000Z"}  # fmt: skip

    def said(rid: str, verdict: str, local: bool = True, route: str = "auto") -> dict[str, object]:
        return {"kind": "feedback", "request_id": f"f-{rid}", "feedback_of": rid,
                "route": route, "local": local, "verdict": verdict,
                "ts": "2026-12-01T10:00:02.000Z"}  # fmt: skip

    records += [request("r1", 0.61), request("r2", 0.95), request("r3", 0.7, local=False)]
    records += [request("r4", 0.66), request("r5", 0.67)]
    records += [said("r1", "bad"), said("r2", "good"), said("r3", "bad", local=False)]
    records += [said("r4", "neither"), said("r5", "bad", route="other")]
    path = tmp_path / "ledger.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    checks = ledger_checks(f"jsonl:///{path}", "auto")
    assert checks.kinds == {"accepted": 3, "feedback": 2}
    assert sorted(zip(checks.scores.tolist(), checks.agree.tolist(), strict=True)) == [
        (0.61, False), (0.7, True), (0.8, True), (0.9, True), (0.95, True),
    ]  # fmt: skip
    assert ledger_checks(f"jsonl:///{path}", "auto", feedback=False).kinds == {"accepted": 3}
