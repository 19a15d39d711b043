"""Write one threshold into a policy file as a reviewable change (`classify calibrate --write`).

The edit replaces one scalar in the YAML text (found through the parser's marks), so
comments and layout stay as they were; the change is shown as a unified diff.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import cast

import yaml


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


def acceptance_path(policy: Path, route: str, tier: str) -> list[str | int]:
    """Where the acceptance threshold of `route`'s step on `tier` lives (any method)."""
    document = yaml.safe_load(policy.read_text())
    spec = (document.get("routes") or {}).get(route)
    if spec is None:
        raise PolicyEditError(f"{policy}: no route '{route}'")
    for index, step in enumerate(spec.get("cascade", [])):
        if step.get("tier") == tier and step.get("acceptance") is not None:
            return ["routes", route, "cascade", index, "acceptance", "threshold"]
    raise PolicyEditError(f"{policy}: route '{route}' has no step on '{tier}' with an acceptance")
