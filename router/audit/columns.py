"""The report's figures: name, title, how each is printed, what it means (the glossary the
HTML report carries and docs/audit.md repeats), and which show without `--columns`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router.audit.formats import Kind, show


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    title: str
    kind: Kind
    meaning: str
    narrow: bool = False  # shown by default

    def value(self, figures: dict[str, Any]) -> Any:
        if self.name.startswith("latency_"):
            return figures["latency_ms"][self.name.removeprefix("latency_")]
        return figures[self.name]

    def text(self, figures: dict[str, Any]) -> str:
        return show(self.value(figures), self.kind)


COLUMNS = (
    Column("requests", "requests", "count", "requests answered or refused in the window", True),
    Column("prompt_tokens", "prompt tok", "count", "prompt tokens over every attempt"),
    Column("completion_tokens", "compl. tok", "count", "completion tokens over every attempt"),
    Column(
        "cost_usd", "spent", "money", "what every attempt cost, as providers bill it", narrow=True
    ),
    Column(
        "estimated_usd",
        "of it estimated",
        "money",
        "the part of spent whose tokens were estimated (answers cut off, left by their client, "
        "or sent without usage)",
    ),
    Column(
        "counterfactual_cost_usd",
        "always-large",
        "money",
        "what the answers would have cost had every one come from the route's largest tier",
    ),
    Column(
        "saved_usd",
        "saved",
        "money",
        "always-large minus spent: what routing saved (degraded answers claim none)",
        narrow=True,
    ),
    Column("saved_pct", "saved %", "pct", "saved as a share of always-large", narrow=True),
    Column(
        "escalation_rate",
        "escalated",
        "share",
        "requests where a tier's answer was rejected and a larger tier asked",
        narrow=True,
    ),
    Column(
        "local_acceptance_rate",
        "kept local",
        "share",
        "of the answers the in-process tier produced, the share it kept",
        narrow=True,
    ),
    Column("degraded", "degraded", "count", "answers served by a smaller tier than wanted"),
    Column("errors", "errors", "count", "requests that ended in an error"),
    Column("shed", "shed", "count", "requests a full tier queue turned away from that tier"),
    Column(
        "refused",
        "refused",
        "count",
        "requests refused for the team's budget or rate, or because every tier was full",
        narrow=True,
    ),
    Column("cache_hit_rate", "cache hits", "share", "of requests that looked, the share found"),
    Column("cache_saved_usd", "cache saved", "money", "what the answers served from cache cost"),
    Column(
        "local_quality",
        "local agrees (95%)",
        "quality",
        "shadow checks: the share of served local answers that agreed with the reference tier, "
        "with its 95% interval and the number of conclusive checks",
        narrow=True,
    ),
    Column("latency_p50", "p50 ms", "ms", "median whole-request latency"),
    Column("latency_p95", "p95 ms", "ms", "95th percentile whole-request latency", narrow=True),
    Column("latency_p99", "p99 ms", "ms", "99th percentile whole-request latency"),
)

NARROW = tuple(c.name for c in COLUMNS if c.narrow)
_BY_NAME = {c.name: c for c in COLUMNS}


def pick(spec: str | None) -> tuple[Column, ...]:
    """`--columns`: None (the narrow default), `all`, or names separated by commas."""
    if spec is None:
        return tuple(c for c in COLUMNS if c.narrow)
    if spec.strip() == "all":
        return COLUMNS
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown or not names:
        raise ValueError(
            f"--columns: unknown {', '.join(unknown) or '(none given)'} "
            f"(choose from all, {', '.join(_BY_NAME)})"
        )
    return tuple(_BY_NAME[n] for n in names)
