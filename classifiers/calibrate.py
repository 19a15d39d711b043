"""Pick a threshold from labeled rows and write it into a policy as a reviewable change.

A request escalates (skips the small tier, or rejects its answer) when the score is below
the threshold. `--target-strong-share X` escalates that share of the labeled mix;
`--target-quality Q` the smallest share whose routed accuracy reaches Q.

The policy edit replaces one scalar in the YAML text (found through the parser's marks),
so comments and layout stay as they were; the change is shown as a unified diff.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import yaml

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


class PolicyEditError(Exception):
    pass


def _child(node: yaml.Node, key: str | int, where: str) -> yaml.Node:
    if isinstance(node, yaml.MappingNode) and isinstance(key, str):
        for name, value in node.value:
            if name.value == key:
                return cast(yaml.Node, value)
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        return cast(yaml.Node, node.value[key])
    raise PolicyEditError(f"{where}: no '{key}'")


def set_scalar(text: str, path: list[str | int], value: float, source: str) -> str:
    """`text` with the scalar at `path` replaced by `value`, everything else untouched."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if node is None:
        raise PolicyEditError(f"{source}: empty")
    where = source
    for key in path:
        node = _child(node, key, where)
        where += f".{key}" if isinstance(key, str) else f"[{key}]"
    if not isinstance(node, yaml.ScalarNode):
        raise PolicyEditError(f"{where}: not a single value")
    start, end = node.start_mark.index, node.end_mark.index
    return text[:start] + repr(value) + text[end:]


def policy_change(policy: Path, path: list[str | int], value: float) -> tuple[str, str]:
    """(new text, unified diff) of setting `path` to `value` in the policy file."""
    text = policy.read_text()
    updated = set_scalar(text, path, value, str(policy))
    diff = "".join(
        difflib.unified_diff(
            text.splitlines(keepends=True),
            updated.splitlines(keepends=True),
            fromfile=str(policy),
            tofile=f"{policy} (calibrated)",
        )
    )
    return updated, diff


def threshold_path(policy: Path, route: str, kind: str) -> list[str | int]:
    """Where a router's (`classifier.threshold`) or an acceptance model's threshold lives."""
    document = yaml.safe_load(policy.read_text())
    spec = (document.get("routes") or {}).get(route)
    if spec is None:
        raise PolicyEditError(f"{policy}: no route '{route}'")
    if kind == "router":
        if "classifier" not in spec:
            raise PolicyEditError(f"{policy}: route '{route}' has no classifier to calibrate")
        return ["routes", route, "classifier", "threshold"]
    for index, step in enumerate(spec.get("cascade", [])):
        if (step.get("acceptance") or {}).get("method") == "learned":
            return ["routes", route, "cascade", index, "acceptance", "threshold"]
    raise PolicyEditError(f"{policy}: route '{route}' has no step with a learned acceptance")
