"""Pick a threshold from labeled rows.

A request escalates (skips the small tier, or rejects its answer) when the score is below
the threshold. `--target-strong-share X` escalates that share of the labeled mix;
`--target-quality Q` the smallest share whose routed accuracy reaches Q. Writing the
threshold into a policy is the router's side (router/policy/edit.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the server re-tunes with this module: it must not import scikit-learn
    from classifiers.examples import Flags
    from classifiers.metrics import Scores


@dataclass(frozen=True, slots=True)
class Calibration:
    threshold: float
    strong_share: float  # share of the labeled rows escalated at this threshold
    quality: float  # accuracy of routed answers on the labeled rows


def calibrate(
    score: Scores,
    weak: Flags,
    strong: Flags,
    *,
    strong_share: float | None = None,
    quality: float | None = None,
) -> Calibration:
    """The threshold for a target: candidates lie between consecutive distinct scores and
    beyond both ends; one sort and two running sums price them all (O(n log n), cheap enough
    for a server re-tuning on its own traffic)."""
    if (strong_share is None) == (quality is None):
        raise ValueError("give one of a target strong share or a target quality")
    order = np.argsort(score, kind="stable")
    ordered = np.asarray(score, dtype=np.float64)[order]
    n = len(ordered)
    # escalating the k lowest scores: the strong answers of those, the weak ones of the rest
    strong_head = np.concatenate([[0], np.cumsum(np.asarray(strong, dtype=np.int64)[order])])
    weak_head = np.concatenate([[0], np.cumsum(np.asarray(weak, dtype=np.int64)[order])])
    cut = np.flatnonzero(ordered[1:] > ordered[:-1]) + 1  # k where a distinct score starts
    ks = np.concatenate([[0], cut, [n]])
    thresholds = np.concatenate([[0.0], (ordered[cut - 1] + ordered[cut]) / 2, [1.0 + 1e-9]])
    qualities = (strong_head[ks] + weak_head[n] - weak_head[ks]) / n
    shares = ks / n
    if strong_share is not None:
        pick = int(np.lexsort((thresholds, np.abs(shares - strong_share)))[0])
    else:
        reaching = np.flatnonzero(qualities >= (quality or 0.0) - 1e-12)
        if not len(reaching):
            raise ValueError(
                f"no threshold reaches quality {quality} (at most {qualities.max():.4f})"
            )
        pick = int(reaching[0])  # the lowest share (ks rise with the index)
    return Calibration(
        round(float(thresholds[pick]), 6), float(shares[pick]), float(qualities[pick])
    )
