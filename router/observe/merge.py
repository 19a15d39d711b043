"""One `/metrics` for every worker of `cascade serve --workers N`: the worker a scrape reaches
merges its own exposition with its siblings' (router.server.siblings.py). Counters,
histograms and summaries are summed over the workers, so a rate is the process tree's;
gauges keep one series per worker, labelled `worker` (its pid): a queue depth or a memory
figure is per process, and `sum`/`max` over them is the dashboard's to choose. Counters'
`_created` timestamps are left out (one per worker would not add up)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families

_SUMMED = frozenset({"counter", "histogram", "summary", "gaugehistogram"})
LabelKey = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _line(name: str, labels: LabelKey, value: float) -> str:
    inner = ",".join(f'{key}="{_escape(val)}"' for key, val in labels)
    return f"{name}{{{inner}}} {_number(value)}" if inner else f"{name} {_number(value)}"


def merge_expositions(expositions: Iterable[tuple[str, bytes]]) -> bytes:
    """Prometheus text expositions of several workers, each with its worker's name, as one."""
    families: dict[str, tuple[str, str]] = {}  # name -> (type, help), in first-seen order
    samples: dict[str, dict[tuple[str, LabelKey], float]] = {}
    for worker, text in expositions:
        for family in text_string_to_metric_families(text.decode("utf-8", "replace")):
            if family.name.endswith("_created"):
                continue
            families.setdefault(family.name, (family.type, family.documentation))
            merged = samples.setdefault(family.name, {})
            summed = family.type in _SUMMED
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                labels = dict(sample.labels)
                if not summed:
                    labels["worker"] = worker
                key = (sample.name, tuple(sorted(labels.items())))
                merged[key] = merged.get(key, 0.0) + sample.value if summed else sample.value
    lines: list[str] = []
    for name, (kind, documentation) in families.items():
        exposed = "untyped" if kind == "unknown" else kind
        lines.append(f"# HELP {name} {_escape(documentation)}")
        lines.append(f"# TYPE {name} {exposed}")
        lines += [_line(sample, labels, value) for (sample, labels), value in samples[name].items()]
    return ("\n".join(lines) + "\n").encode()
