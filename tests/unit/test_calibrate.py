"""Thresholds from labeled rows, and the policy edit that leaves the rest of the file alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from classifiers.calibrate import calibrate
from router.policy.edit import PolicyEditError, policy_change, set_scalar, threshold_path

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
