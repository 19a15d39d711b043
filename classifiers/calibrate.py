"""Pick a threshold from labeled rows.

A request escalates (skips the small tier, or rejects its answer) when the score is below
the threshold. `--target-strong-share X` escalates that share of the labeled mix;
`--target-quality Q` the smallest share whose routed accuracy reaches Q. Writing the
threshold into a policy is the router's side (router/policy/edit.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from classifiers.examples import Flags
from classifiers.metrics import Scores


@dataclass(frozen=True, slots=True)
class Calibration:
    threshold: float
    strong_share: float  # share of the labeled rows escalated at this threshold
    quality: float  # accuracy of routed answers on the labeled rows


def _at(score: Scores, weak: Flags, strong: Flags, threshold: float) -> Calibration:
    escalated = score < threshold
    quality = float(np.where(escalated, strong, weak).mean())
    return Calibration(round(threshold, 6), float(escalated.mean()), quality)


def calibrate(
    score: Scores,
    weak: Flags,
    strong: Flags,
    *,
    strong_share: float | None = None,
    quality: float | None = None,
) -> Calibration:
    if (strong_share is None) == (quality is None):
        raise ValueError("give one of a target strong share or a target quality")
    ordered = np.unique(score)
    # candidate thresholds: between consecutive distinct scores, and beyond both ends
    cuts = np.concatenate([[0.0], (ordered[:-1] + ordered[1:]) / 2, [1.0 + 1e-9]])
    options = [_at(score, weak, strong, float(t)) for t in cuts]
    if strong_share is not None:
        return min(options, key=lambda c: (abs(c.strong_share - strong_share), c.threshold))
    reaching = [c for c in options if c.quality >= (quality or 0.0) - 1e-12]
    if not reaching:
        best = max(option.quality for option in options)
        raise ValueError(f"no threshold reaches quality {quality} (at most {best:.4f})")
    return min(reaching, key=lambda c: c.strong_share)
