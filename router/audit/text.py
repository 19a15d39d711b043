"""Table (rich) and CSV renderings of a report."""

from __future__ import annotations

import csv
import io
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from router.audit.columns import COLUMNS, Column, pick
from router.audit.formats import count, money, pct, quality, share


def cell(value: Any) -> str:
    """A value without a known kind (the threshold changes' numbers, ids)."""
    if value is None:
        return "—"
    if isinstance(value, dict) and "estimate" in value:
        return quality(value)
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def headline(team: dict[str, Any]) -> str:
    """One team in a sentence a manager reads: `search spent $12.34 on 5,002 requests; ...`."""
    spent = f"{team['team']} spent {money(team['spent_usd'])}"
    parts = [f"{spent} on {count(team['requests'])} requests"]
    if team["estimated_usd"]:
        parts[0] += f" ({money(team['estimated_usd'])} of it estimated)"
    if team["saved_pct"] is not None:
        parts.append(
            f"routing saved {money(team['saved_usd'])} ({pct(team['saved_pct'])}) of "
            f"{money(team['always_large_usd'])}, what every answer from the largest tier would cost"
        )
    if team["refused"]:
        reasons = ", ".join(f"{r} {count(n)}" for r, n in team["refused_by_reason"].items())
        parts.append(f"{count(team['refused'])} refused ({reasons})")
    if team["shadow_spend_usd"] or team["local_quality"]:
        parts.append(f"shadow checks cost {money(team['shadow_spend_usd'])}")
    if team["local_quality"] is not None:
        parts.append(f"local answers agreed with the reference: {quality(team['local_quality'])}")
    said = team.get("feedback")
    if said is not None and said["estimate"] is not None:
        low, high = said["interval_95"]
        parts.append(
            f"applications called {share(said['estimate'])} of {count(said['good'] + said['bad'])} "
            f"answers good ({share(low).removesuffix('%')}-{share(high)})"
        )
    return "; ".join(parts) + "."


def time_window(report: dict[str, Any]) -> str:
    start = report["since"] or report["first_record"] or "—"
    end = report["until"] or report["last_record"] or "—"
    return f"{start} → {end}"


def _row(key: dict[str, str], figures: dict[str, Any], columns: tuple[Column, ...]) -> list[str]:
    return [*key.values(), *(c.text(figures) for c in columns)]


def render_table(
    report: dict[str, Any], columns: tuple[Column, ...] | None = None, width: int = 120
) -> str:
    """The terminal report: a headline per team, the groups (the narrow columns unless
    `columns` says otherwise), the tiers, threshold changes, baselines and drift."""
    columns = pick(None) if columns is None else columns
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    window = time_window(report)
    console.print(Text(f"cascade audit — {report['ledger']} — {window}"))
    for team in report["headline"]:
        console.print(Text("• " + headline(team)))
    groups = Table(title=f"by {', '.join(report['by'])}", title_justify="left")
    for dimension in report["by"]:
        groups.add_column(dimension)  # Text cells below: ledger values are never markup
    for column in columns:
        groups.add_column(column.title, justify="right", no_wrap=column.kind != "quality")
    for group in report["groups"]:
        groups.add_row(*(Text(c) for c in _row(group["key"], group, columns)))
    groups.add_section()
    all_key = {d: "all" for d in report["by"]}
    groups.add_row(*(Text(c) for c in _row(all_key, report["totals"], columns)))
    console.print(groups)

    tiers = Table(title="tiers", title_justify="left")
    for title in (
        "tier",
        "attempts",
        "outcomes",
        "spent",
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
                    count(tier["attempts"]),
                    outcomes,
                    money(tier["cost_usd"]),
                    " / ".join(_ms(v) for v in tier["latency_ms"].values()),
                    " / ".join(_ms(v) for v in tier["ttft_ms"].values()),
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
            f"baselines: spent {money(base['actual_usd'])} · always-large "
            f"{money(base['always_large_usd'])} · first attempts kept "
            f"{money(base['always_small_usd'])} (had every request kept its first tier's "
            "answer; after a pre-router skip that tier is a large one)\n"
            f"classifier: {classifier['scored']:,} scored requests; drift vs the previous window "
            f"(PSI): {'—' if drift is None else f'{drift:.3f}'}"
        )
    )
    if len(columns) < len(COLUMNS):
        console.print(Text("more figures: --columns all (or a list: cascade audit --help)"))
    return console.export_text()


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


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
    names = [c.name for c in COLUMNS if not c.name.startswith("latency_")]
    writer.writerow([*report["by"], *names, "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"])
    for group in report["groups"]:
        latency = group["latency_ms"]
        writer.writerow(
            [
                *(_safe(v) for v in group["key"].values()),
                *(quality(v) if isinstance(v := group[name], dict) else v for name in names),
                latency["p50"],
                latency["p95"],
                latency["p99"],
            ]
        )
    return out.getvalue()


def _safe(value: str) -> str:
    """Keep a spreadsheet from running a ledger value as a formula (CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
