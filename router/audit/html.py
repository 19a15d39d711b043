"""The HTML report: one self-contained file (inline CSS and SVG, no network assets)."""

from __future__ import annotations

import math
from html import escape
from typing import Any

from router.audit.columns import Column, pick
from router.audit.formats import Kind, count, money, show
from router.audit.text import cell, headline, time_window

_PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D")
_W, _H, _PAD = 640, 220, 40  # the chart, and the room under it for the x labels
_LEFT, _RIGHT, _TOP = 64, 12, 10  # room for the y labels; margins
_CHAR_PX, _GAP_PX = 6.5, 10  # an x label's width per character at 10px, and between labels

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(660px,1fr));gap:16px}
figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:8px}
figcaption{font-weight:600;margin-bottom:4px}
table{border-collapse:collapse;font-size:12px;margin-top:8px}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:right}th{background:#f4f4f4}
td.k,th.k{text-align:left}.legend span{display:inline-block;margin-right:12px}
.sw{display:inline-block;width:10px;height:10px;margin-right:4px}
svg text{font-size:10px;fill:#555}.note{color:#777}
td.below{color:#B00020;font-weight:700}.summary{font-weight:600}
ul.headline li{margin:4px 0}dl.glossary dt{font-weight:600}dl.glossary dd{margin:0 0 6px 16px}
"""

# Marks each chart with data-drawn=yes|no after layout, so a browser test can tell.
SCRIPT = """
window.addEventListener('load', function () {
  var charts = document.querySelectorAll('svg.chart'), drawn = 0;
  charts.forEach(function (chart) {
    var ok = Array.prototype.some.call(chart.querySelectorAll('.mark'), function (m) {
      var box = m.getBBox(); return box.width > 0 || box.height > 0;
    });
    chart.setAttribute('data-drawn', ok ? 'yes' : 'no');
    if (ok) drawn += 1;
  });
  document.body.setAttribute('data-charts', String(charts.length));
  document.body.setAttribute('data-drawn', String(drawn));
});
"""


def _color(index: int) -> str:
    return _PALETTE[index % len(_PALETTE)]


def _name(name: str) -> str:
    """A series' legend label: a record without a team or tier is not an unlabelled `-`."""
    return "none (refused, invalid or failed)" if name in ("-", "") else name


def _legend(names: list[str]) -> str:
    items = "".join(
        f'<span class="item"><i class="sw" style="background:{_color(i)}"></i>'
        f"{escape(_name(n))}</span>"
        for i, n in enumerate(names)
    )
    return f'<div class="legend">{items}</div>'


def _short(label: str) -> str:
    """An x-axis label: `2026-12-05T14:00` as `12-05 14:00`, `2026-12-05` as `12-05` (the
    year is in the window above the charts)."""
    if len(label) >= 10 and label[4] == "-" and label[7] == "-":
        return label[5:10] + (" " + label[11:16] if len(label) > 11 else "")
    return label


def _axis_value(value: float, kind: Kind) -> str:
    if kind == "money" and value >= 1000:
        return f"${value / 1000:,.1f}k"
    return show(value, kind)


def _axes(labels: list[str], top: float, kind: Kind) -> str:
    """Both axes: the y scale's top and zero, and as many x labels as fit without touching
    (every `step`-th, centred under its bar or point)."""
    base = _H - _PAD
    parts = [
        f'<line x1="{_LEFT}" y1="{base}" x2="{_W - _RIGHT}" y2="{base}" stroke="#999"/>',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{base}" stroke="#999"/>',
        f'<text class="tick y" x="{_LEFT - 4}" y="{_TOP + 4}" text-anchor="end">'
        f"{escape(_axis_value(top, kind))}</text>",
        f'<text class="tick y" x="{_LEFT - 4}" y="{base}" text-anchor="end">'
        f"{escape(_axis_value(0.0, kind))}</text>",
    ]
    if not labels:
        return "".join(parts)
    short = [_short(label) for label in labels]
    width = (_W - _LEFT - _RIGHT) / len(labels)
    widest = max(len(label) for label in short) * _CHAR_PX + _GAP_PX
    step = max(1, math.ceil(widest / width))
    for i in range(0, len(labels), step):
        x = _LEFT + (i + 0.5) * width
        parts.append(
            f'<text class="tick x" x="{x:.1f}" y="{base + 14}" text-anchor="middle">'
            f"{escape(short[i])}</text>"
        )
    return "".join(parts)


def stacked(labels: list[str], stacks: list[dict[str, float]], names: list[str], kind: Kind) -> str:
    top = max((sum(s.values()) for s in stacks), default=0.0) or 1.0
    width = (_W - _LEFT - _RIGHT) / max(1, len(labels))
    scale = (_H - _PAD - _TOP) / top
    marks = []
    for i, stack in enumerate(stacks):
        y = float(_H - _PAD)
        for j, name in enumerate(names):
            value = stack.get(name, 0.0)
            if value <= 0:
                continue
            height = value * scale
            y -= height
            marks.append(
                f'<rect class="mark" data-series="{escape(_name(name))}" '
                f'x="{_LEFT + i * width + 0.5:.1f}" y="{y:.1f}" '
                f'width="{max(0.5, width - 1):.1f}" height="{height:.1f}" '
                f'fill="{_color(j)}"><title>{escape(labels[i])} '
                f"{escape(_name(name))}: {escape(show(value, kind))}</title></rect>"
            )
    return _svg(_axes(labels, top, kind) + "".join(marks))


def _lines(labels: list[str], series: dict[str, list[float]], kind: Kind) -> str:
    top = max((max(v, default=0.0) for v in series.values()), default=0.0) or 1.0
    width = (_W - _LEFT - _RIGHT) / max(1, len(labels))
    scale = (_H - _PAD - _TOP) / top
    marks = []
    for j, (name, values) in enumerate(series.items()):
        points = " ".join(
            f"{_LEFT + (i + 0.5) * width:.1f},{_H - _PAD - v * scale:.1f}"
            for i, v in enumerate(values)
        )
        if len(values) == 1:  # one bucket: a dot, not an invisible line
            x, y = points.split(",")
            marks.append(
                f'<circle class="mark" data-series="{escape(name)}" cx="{x}" cy="{y}" r="4" '
                f'fill="{_color(j)}"><title>{escape(name)}: {escape(show(values[0], kind))}'
                "</title></circle>"
            )
        else:
            marks.append(
                f'<polyline class="mark" data-series="{escape(name)}" points="{points}" '
                f'fill="none" stroke-width="2" stroke="{_color(j)}"><title>{escape(name)}'
                "</title></polyline>"
            )
    return _svg(_axes(labels, top, kind) + "".join(marks))


def _svg(body: str) -> str:
    return f'<svg class="chart" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}">{body}</svg>'


def figure(caption: str, svg: str, legend: list[str]) -> str:
    return f"<figure><figcaption>{escape(caption)}</figcaption>{svg}{_legend(legend)}</figure>"


def _charts(report: dict[str, Any]) -> list[str]:
    points = report["series"]["points"]
    labels = [p["t"] for p in points]
    teams = sorted({t for p in points for t in p["cost_by_team"]})
    tiers = sorted({t for p in points for t in p["tiers"]})
    figures = [
        figure(
            f"Spent by team over time (USD per {report['series']['bucket']})",
            stacked(labels, [p["cost_by_team"] for p in points], teams, "money"),
            teams,
        ),
        figure(
            "Tier mix (share of requests answered by each tier)",
            stacked(
                labels,
                [{t: n / p["requests"] for t, n in p["tiers"].items()} for p in points],
                tiers,
                "share",
            ),
            tiers,
        ),
        figure(
            "Escalation rate over time",
            _lines(labels, {"escalated": [p["escalation_rate"] or 0.0 for p in points]}, "share"),
            ["escalated"],
        ),
    ]
    cumulative: dict[str, list[float]] = {"always-large": [], "spent": []}
    large = actual = 0.0
    for p in points:
        large += p["counterfactual_cost_usd"]
        actual += p["cost_usd"]
        cumulative["always-large"].append(large)
        cumulative["spent"].append(actual)
    figures.append(
        figure(
            "Spent against always-large (cumulative USD; the gap is what routing saved)",
            _lines(labels, cumulative, "money"),
            list(cumulative),
        )
    )
    bins = [f"{i / 10:.1f}" for i in range(10)]
    for tier in report["tiers"]:
        counts = tier["confidence_histogram"]
        if sum(counts):
            figures.append(
                figure(
                    f"Confidence of tier {tier['tier']}'s answers (answers per bin)",
                    stacked(bins, [{"answers": float(n)} for n in counts], ["answers"], "count"),
                    ["answers"],
                )
            )
    classifier = report["classifier"]
    if classifier["scored"]:
        series = {"this window": [float(n) for n in classifier["histogram"]]}
        if classifier["previous_window_histogram"]:
            series["previous window"] = [float(n) for n in classifier["previous_window_histogram"]]
        figures.append(
            figure(
                "Classifier score distribution (requests per bin)",
                _lines(bins, series, "count"),
                list(series),
            )
        )
    return figures


def _outcomes(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items()))


def _cells(figures: dict[str, Any], columns: tuple[Column, ...]) -> str:
    out = []
    for column in columns:
        value = column.value(figures)
        below = column.kind == "quality" and value is not None and value["below_target"]
        css = ' class="below"' if below else ""
        out.append(f"<td{css}>{escape(column.text(figures))}</td>")
    return "".join(out)


def _table(report: dict[str, Any], columns: tuple[Column, ...]) -> str:
    head = "".join(f'<th class="k">{escape(d)}</th>' for d in report["by"])
    head += "".join(f"<th>{escape(c.title)}</th>" for c in columns)
    rows = []
    for group in [*report["groups"], {"key": {d: "all" for d in report["by"]}, **report["totals"]}]:
        cells = "".join(f'<td class="k">{escape(v)}</td>' for v in group["key"].values())
        rows.append(f"<tr>{cells}{_cells(group, columns)}</tr>")
    tiers = "".join(
        f'<tr><td class="k">{escape(t["tier"])}</td><td>{count(t["attempts"])}</td>'
        f'<td class="k">{escape(_outcomes(t["outcomes"]))}</td>'
        f"<td>{escape(money(t['cost_usd']))}</td>"
        + "".join(f"<td>{escape(show(v, 'ms'))}</td>" for v in t["latency_ms"].values())
        + "".join(f"<td>{escape(show(v, 'ms'))}</td>" for v in t["ttft_ms"].values())
        + "</tr>"
        for t in report["tiers"]
    )
    return (
        f"<table><tr>{head}</tr>{''.join(rows)}</table><h2>Tiers</h2><table><tr>"
        '<th class="k">tier</th><th>attempts</th><th class="k">outcomes</th><th>spent</th>'
        "<th>latency p50 ms</th><th>p95</th><th>p99</th><th>ttft p50 ms</th><th>p95</th>"
        f"<th>p99</th></tr>{tiers}</table>"
    )


def _headlines(report: dict[str, Any]) -> str:
    items = "".join(f"<li>{escape(headline(team))}</li>" for team in report["headline"])
    return f'<h2>Teams</h2><ul class="headline">{items}</ul>' if items else ""


_GLOSSARY_EXTRA = (
    (
        "always-large",
        "what the answers would have cost had every one come from the route's largest tier, "
        "priced from the tokens recorded; saved = always-large minus spent",
    ),
    (
        "estimated",
        "money on attempts whose tokens the provider did not report (answers cut off or left "
        "by their client): counted or estimated by the gateway",
    ),
    (
        "shadow checks",
        "a sample of served local answers asked again of a reference tier and compared; what "
        "they cost is shadow spend, not the team's spend",
    ),
    (
        "first attempts kept",
        "what the requests would have cost had each kept its first tier's answer (after a "
        "pre-router skip that first tier is a large one) - in the JSON as always_small_usd",
    ),
    ("ttft", "time to the first token of a streamed answer"),
    ("PSI", "population stability index of the classifier's scores against the window before"),
)


def _glossary(columns: tuple[Column, ...]) -> str:
    terms = [(c.title, c.meaning) for c in columns] + list(_GLOSSARY_EXTRA)
    items = "".join(f"<dt>{escape(t)}</dt><dd>{escape(m)}</dd>" for t, m in terms)
    return f'<h2>What the figures mean</h2><dl class="glossary">{items}</dl>'


_CHANGE_COLUMNS = (
    ("ts", "at"),
    ("route", "route"),
    ("tier", "tier"),
    ("threshold_from", "from"),
    ("threshold_to", "to"),
    ("policy_threshold", "policy"),
    ("wanted", "wanted"),
    ("checks", "checks"),
    ("estimated_quality", "est. quality"),
    ("escalated_share", "escalated"),
    ("policy_version", "policy version"),
)


def _changes(report: dict[str, Any]) -> str:
    """Thresholds shadow.autotune changed (none: nothing)."""
    changes = report.get("threshold_changes") or []
    if not changes:
        return ""
    head = "".join(f"<th>{escape(title)}</th>" for _, title in _CHANGE_COLUMNS)
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{escape(cell(c[name]))}</td>" for name, _ in _CHANGE_COLUMNS)
        + "</tr>"
        for c in changes
    )
    return f"<h2>Threshold changes (shadow.autotune)</h2><table><tr>{head}</tr>{rows}</table>"


def render_html(report: dict[str, Any], columns: tuple[Column, ...] | None = None) -> str:
    """The whole report as one page: team headlines, charts, the table (the narrow columns
    unless `columns` says otherwise), tiers, threshold changes and a glossary."""
    columns = pick(None) if columns is None else columns
    base = report["baselines"]
    totals = report["totals"]
    drift = report["classifier"]["psi"]
    window = time_window(report)
    summary = (
        f"{count(totals['requests'])} requests · spent {money(base['actual_usd'])} · "
        f"always-large {money(base['always_large_usd'])} · saved "
        f"{money(totals['saved_usd'])} ({show(totals['saved_pct'], 'pct')}) · escalated "
        f"{show(totals['escalation_rate'], 'share')} · refused {count(totals['refused'])} · "
        f"classifier drift (PSI) {'—' if drift is None else f'{drift:.3f}'}"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>cascade audit</title><style>{STYLE}</style></head><body>"
        f"<h1>cascade route audit</h1><p>{escape(report['ledger'])} · {escape(window)}</p>"
        f'<p class="summary">{escape(summary)}</p>{_headlines(report)}'
        f'<div class="grid">{"".join(_charts(report))}</div>'
        f"<h2>By {escape(', '.join(report['by']))}</h2>{_table(report, columns)}"
        f"{_changes(report)}{_glossary(columns)}"
        f"<script>{SCRIPT}</script></body></html>"
    )
