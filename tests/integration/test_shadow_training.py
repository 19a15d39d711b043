"""Models and thresholds from the ledger's shadow checks: `cascade classify calibrate
--from-ledger` and `cascade classify train --from-ledger` on a ledger of checks."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson

from classifiers.artifacts import load_acceptance
from classifiers.calibrate import calibrate
from router.backends.base import Completion
from router.shadow.runner import features_of

CLASSIFY = [sys.executable, "-m", "router", "classify"]
POLICY = """\
tiers:
  small: {type: llama_cpp}
  large: {type: openai, model: m}
routes:
  auto:
    cascade:
      - tier: small
        acceptance: {method: mean_prob, threshold: 0.5}   # kept when confident
      - tier: large
"""


def _ledger(path: Path, count: int = 400) -> tuple[list[float], list[bool]]:
    """Checks whose agreement follows the local answer's confidence (and its logprobs)."""
    rng = random.Random(5)
    scores, agree = [], []
    with path.open("wb") as ledger:
        for n in range(count):
            confidence = rng.random()
            agreed = rng.random() < confidence  # confident answers agree more often
            logprob = float(np.log(max(confidence, 1e-3)))
            local = Completion("Paris", "stop", 9, 3, "small", token_logprobs=[logprob] * 3)
            record = {
                "kind": "shadow",
                "request_id": f"shadow-{n}",
                "shadow_of": f"req-{n}",
                "ts": f"2026-12-02T10:{n // 60:02d}:{n % 60:02d}.000Z",
                "team": "t",
                "route": "auto",
                "local_tier": "small",
                "local_outcome": "accepted" if confidence >= 0.5 else "escalated",
                "verdict": "agree" if agreed else "disagree",
                "local_confidence": confidence,
                "features": features_of("What is the capital of France?", local),
            }
            ledger.write(orjson.dumps(record) + b"\n")
            scores.append(confidence)
            agree.append(agreed)
    return scores, agree


def test_calibrate_from_the_ledger_writes_the_local_steps_threshold(tmp_path: Path) -> None:
    scores, agree = _ledger(tmp_path / "ledger.jsonl")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    url = f"jsonl:///{tmp_path / 'ledger.jsonl'}"
    done = subprocess.run(
        [
            *CLASSIFY,
            *("calibrate", "--from-ledger", url, "--route", "auto", "--target-quality", "0.8"),
            *("--policy", str(policy), "--write"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    expected = calibrate(np.array(scores), np.array(agree), np.ones(400, bool), quality=0.8)
    assert f"threshold {expected.threshold} for route 'auto' step 'small' from 400" in done.stdout
    assert f"threshold: {expected.threshold}" in policy.read_text()
    assert "# kept when confident" in policy.read_text()  # the rest of the file as it was


def test_train_from_the_ledger_fits_a_model_that_serves(tmp_path: Path) -> None:
    _ledger(tmp_path / "ledger.jsonl")
    out = tmp_path / "mine.skops"
    url = f"jsonl:///{tmp_path / 'ledger.jsonl'}"
    done = subprocess.run(
        [
            *CLASSIFY,
            *("train", "--from-ledger", url, "--route", "auto"),
            *("--kind", "acceptance", "--out", str(out)),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert "trained on 300 shadow checks" in done.stdout and "100 held out" in done.stdout
    auroc = float(done.stdout.rsplit("AUROC", 1)[1])
    assert auroc > 0.7  # the agreement follows the logprobs it was given
    model = load_acceptance(out)
    question = "What is the capital of France?"
    confident = model.score(question, "Paris", [-0.05] * 3, "stop")
    unsure = model.score(question, "Paris", [-3.0] * 3, "stop")
    assert confident > unsure


def test_train_from_the_ledger_holds_out_what_it_is_told_even_nothing(tmp_path: Path) -> None:
    _ledger(tmp_path / "ledger.jsonl")
    url = f"jsonl:///{tmp_path / 'ledger.jsonl'}"
    done = subprocess.run(
        [
            *CLASSIFY,
            *("train", "--from-ledger", url, "--route", "auto", "--hold-out-share", "0"),
            *("--kind", "acceptance", "--out", str(tmp_path / "all.skops")),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert "trained on 400 shadow checks" in done.stdout and "0 held out" in done.stdout
