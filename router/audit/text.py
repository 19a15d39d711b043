"""Table (rich) and CSV renderings of a report."""

from __future__ import annotations

import csv
import io
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

COLUMNS = (
    ("requests", "requests"),
    ("prompt_tokens", "prompt tok"),
    ("completion_tokens", "compl. tok"),
    ("cost_usd", "cost $"),
    ("estimated_usd", "of it estimated $"),
    ("counterfactual_cost_usd", "always-large $"),
    ("saved_usd", "saved $"),
    ("saved_pct", "saved %"),
    ("escalation_rate", "escalation rate"),
    ("local_acceptance_rate", "local accepted"),
    ("degraded", "degraded"),
    ("errors", "errors"),
    ("shed", "shed"),
    ("refused", "refused"),
    ("cache_hit_rate", "cache hits"),
    ("cache_saved_usd", "cache saved $"),
    ("local_quality", "local agrees (95%)"),
)


def _quality(value: dict[str, Any]) -> str:
    """Shadow checks' agreement: `0.82 [0.75-0.88] n=120`, flagged below the target."""
    if value["estimate"] is None:
        return f"— n=0 ({value['inconclusive']} inconclusive, {value['errors']} errors)"
    low, high = value["interval_95"]
    text = f"{value['estimate']:.2f} [{low:.2f}-{high:.2f}] n={value['checks']}"
    return text + (f" BELOW TARGET {value['target']:g}" if value["below_target"] else "")


def cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict) and "estimate" in value:
        return _quality(value)
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def time_window(report: dict[str, Any]) -> str:
    start = report["since"] or report["first_record"] or "—"
    end = report["until"] or report["last_record"] or "—"
    return f"{start} → {end}"


def _row(key: dict[str, str], figures: dict[str, Any]) -> list[str]:
    latency = figures["latency_ms"]
    return [
        *key.values(),
        *(cell(figures[name]) for name, _ in COLUMNS),
        *(cell(latency[p]) for p in ("p50", "p95", "p99")),
    ]


def render_table(report: dict[str, Any], width: int = 200) -> str:
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    window = time_window(report)
    groups = Table(title=f"cascade audit — {report['ledger']} — {window}", title_justify="left")
    for dimension in report["by"]:
        groups.add_column(dimension)  # Text cells below: ledger values are never markup
    for _, title in COLUMNS:
        groups.add_column(title, justify="right")
    for p in ("p50", "p95", "p99"):
        groups.add_column(f"{p} ms", justify="right")
    for group in report["groups"]:
        groups.add_row(*(Text(cell) for cell in _row(group["key"], group)))
    groups.add_section()
    groups.add_row(*(Text(c) for c in _row({d: "all" for d in report["by"]}, report["totals"])))
    console.print(groups)

    tiers = Table(title="tiers", title_justify="left")
    for title in (
        "tier",
        "attempts",
        "outcomes",
        "cost $",
        "latency p50/p95/p99 ms",
        "ttft p50/p95/p99 ms",
        "confidence 0→1 (10 bins)",
    ):
        tiers.add_column(title)
    for tier in report["tiers"]:
        outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(tier["outcomes"].items()))
        tiers.add_row(
            *(
                Text(c)
                for c in (
                    tier["tier"],
                    f"{tier['attempts']:,}",
                    outcomes,
                    cell(tier["cost_usd"]),
                    " / ".join(cell(v) for v in tier["latency_ms"].values()),
                    " / ".join(cell(v) for v in tier["ttft_ms"].values()),
                    " ".join(str(n) for n in tier["confidence_histogram"]),
                )
            )
        )
    console.print(tiers)
    if report.get("threshold_changes"):
        console.print(_changes(report["threshold_changes"]))

    base = report["baselines"]
    classifier = report["classifier"]
    drift = classifier["psi"]
    console.print(
        Text(
            f"baselines: actual ${cell(base['actual_usd'])} · always-small "
            f"${cell(base['always_small_usd'])} · "
            f"always-large ${cell(base['always_large_usd'])}\n"
            f"classifier: {classifier['scored']:,} scored requests; drift vs the previous window "
            f"(PSI): {'—' if drift is None else f'{drift:.3f}'}"
        )
    )
    return console.export_text()


def _changes(changes: list[dict[str, Any]]) -> Table:
    """Thresholds shadow.autotune changed: when, from what to what, and on what evidence."""
    table = Table(title="threshold changes (shadow.autotune)", title_justify="left")
    for title in ("at", "route", "tier", "threshold", "policy", "wanted", "bounds", "checks"):
        table.add_column(title)
    table.add_column("est. quality / escalated at the new threshold")
    table.add_column("policy version")
    for change in changes:
        table.add_row(
            *(
                Text(str(c))
                for c in (
                    change["ts"],
                    change["route"],
                    change["tier"],
                    f"{cell(change['threshold_from'])} → {cell(change['threshold_to'])}",
                    cell(change["policy_threshold"]),
                    cell(change["wanted"]),
                    f"{cell(change['min_threshold'])} to {cell(change['max_threshold'])}",
                    cell(change["checks"]),
                    f"{cell(change['estimated_quality'])} / {cell(change['escalated_share'])}",
                    change["policy_version"],
                )
            )
        )
    return table


def render_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    names = [name for name, _ in COLUMNS]
    writer.writerow([*report["by"], *names, "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"])
    for group in report["groups"]:
        latency = group["latency_ms"]
        writer.writerow(
            [
                *(_safe(v) for v in group["key"].values()),
                *(_quality(v) if isinstance(v := group[name], dict) else v for name in names),
                latency["p50"],
                latency["p95"],
                latency["p99"],
            ]
        )
    return out.getvalue()


def _safe(value: str) -> str:
    """Keep a spreadsheet from running a ledger value as a formula (CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
