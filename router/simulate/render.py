"""A simulation as a terminal table, and as the one line a pull request's comment wants."""

from __future__ import annotations

import math
from typing import Any

from router.audit.formats import count, money, ms, share


def usd(value: float | None) -> str:
    """Dollars with three significant figures under $100 ($0.0466, $1.23): a replay's
    differences are often smaller than a cent."""
    if value is None:
        return "—"
    if abs(value) >= 100 or value == 0:
        return money(value)
    digits = max(2, 2 - math.floor(math.log10(abs(value))))
    return f"{'-' if value < 0 else ''}${abs(value):,.{digits}f}"


def latency(figures: dict[str, Any]) -> str:
    """p50 ms; marked * when some requests' latency is unknown (a tier that never ran)."""
    found = figures["latency_ms"]
    text = ms(found["p50"])
    return f"{text}*" if found["p50"] is not None and found["known"] < figures["requests"] else text


def arrow(before: str, after: str) -> str:
    return before if before == after else f"{before} → {after}"


def quality(figures: dict[str, Any]) -> str:
    """The combined quality of the local answers served: `91% (88-93%) n=412`."""
    found = figures["quality"]["combined"]
    if found is None:
        return "—"
    low, high = found["interval_95"]
    return (
        f"{share(found['estimate'])} ({share(low).removesuffix('%')}-{share(high)}) "
        f"n={found['n']:,}"
    )


def budget(figures: dict[str, Any]) -> str:
    """What the team's budget did to the group's requests: `degraded 1,203`."""
    return ", ".join(f"{kind} {count(n)}" for kind, n in figures["budget"].items()) or "—"


def cost(figures: dict[str, Any]) -> str:
    interval = figures.get("cost_interval_95")
    text = usd(figures["cost_usd"])
    if interval is None and figures.get("estimated_usd"):
        return f"{text} (est.)"  # partly estimated, and no interval: said under the table
    if interval is None or interval[0] == interval[1]:
        return text
    return f"{text} ({usd(interval[0])} to {usd(interval[1])})"


def cells(group: dict[str, Any]) -> list[str]:
    a, p = group["actual"], group["predicted"]
    return [
        arrow(count(a["requests"]), count(p["requests"])),
        arrow(share(a["local_share"]), share(p["local_share"])),
        arrow(count(a["escalations"]), count(p["escalations"])),
        arrow(usd(a["cost_usd"]), cost(p)),
        arrow(latency(a), latency(p)),
        arrow(quality(a), quality(p)),
        arrow(budget(a), budget(p)),
    ]


HEADER = [
    "team",
    "route",
    "requests",
    "local",
    "escalations",
    "cost",
    "p50 ms",
    "local quality",
    "budget",
]


def summary(report: dict[str, Any]) -> str:
    """One line: what the candidate would change, with its intervals and what was left out."""
    totals = report["totals"]
    a, p, change = totals["actual"], totals["predicted"], totals["change"]
    pct = change["cost_pct"]
    moved = "" if pct is None else f" ({pct:+.1f}%)"
    skipped = report["not_replayed"]
    left = (
        f"; {count(skipped['requests'])} ({share(skipped['share'])}) not replayed"
        if skipped["requests"]
        else ""
    )
    return (
        f"{count(report['requests'])} requests replayed under {report['candidate']['version']}: "
        f"cost {usd(a['cost_usd'])} → {cost(p)}{moved}, answered locally "
        f"{arrow(share(a['local_share']), share(p['local_share']))}, escalations "
        f"{arrow(count(a['escalations']), count(p['escalations']))}, local quality "
        f"{arrow(quality(a), quality(p))}{left}"
    )


def render_markdown(report: dict[str, Any]) -> str:
    """A pull-request comment: the summary line, then the table by team and route."""
    name = report["candidate"]["source"]
    lines = [
        f"**cascade policy simulate** `{name}` — {summary(report)}",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    for group in report["groups"]:
        row = [group["team"], group["route"], *cells(group)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines) + "\n"


def render_table(report: dict[str, Any]) -> str:
    rows = [HEADER]
    rows += [[g["team"], g["route"], *cells(g)] for g in report["groups"]]
    total = {"actual": report["totals"]["actual"], "predicted": report["totals"]["predicted"]}
    rows.append(["all", "", *cells(total)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = [
        f"ledger     {report['ledger']}",
        f"candidate  {report['candidate']['source']} ({report['candidate']['version']})",
        f"window     {report['first_record'] or '—'} → {report['last_record'] or '—'}",
        "",
    ]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    lines += ["", summary(report)]
    if any("(est.)" in row[5] for row in rows[1:]):
        lines.append(
            "(est.) partly priced from estimated tokens, with too few requests that called "
            "both tiers for an interval"
        )
    if any("*" in row[6] for row in rows[1:]):
        lines.append(
            "* p50 of the requests whose latency is known: the rest would call a tier that "
            "never ran for them"
        )
    skipped = report["not_replayed"]
    for reason, number in skipped["reasons"].items():
        lines.append(f"  not replayed ({count(number)}): {reason}")
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"
