"""The HTML report: one self-contained file (inline CSS and SVG, no network assets)."""

from __future__ import annotations

from html import escape
from typing import Any

from router.audit.text import COLUMNS, cell, time_window

_PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D")
_W, _H, _PAD = 640, 220, 40

_STYLE = """
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
"""

# Marks each chart with data-drawn=yes|no after layout, so a browser test can tell.
_SCRIPT = """
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


def _legend(names: list[str]) -> str:
    items = "".join(
        f'<span><i class="sw" style="background:{_color(i)}"></i>{escape(n)}</span>'
        for i, n in enumerate(names)
    )
    return f'<div class="legend">{items}</div>'


def _axes(labels: list[str], top: float, unit: str) -> str:
    parts = [
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - 10}" y2="{_H - _PAD}" stroke="#999"/>',
        f'<line x1="{_PAD}" y1="10" x2="{_PAD}" y2="{_H - _PAD}" stroke="#999"/>',
        f'<text x="2" y="14">{escape(cell(top))}{escape(unit)}</text>',
        f'<text x="2" y="{_H - _PAD}">0</text>',
    ]
    step = max(1, len(labels) // 8)
    width = (_W - _PAD - 10) / max(1, len(labels))
    for i in range(0, len(labels), step):
        x = _PAD + i * width
        parts.append(f'<text x="{x:.1f}" y="{_H - _PAD + 14}">{escape(labels[i][-11:])}</text>')
    return "".join(parts)


def _stacked(
    labels: list[str], stacks: list[dict[str, float]], names: list[str], unit: str = ""
) -> str:
    top = max((sum(s.values()) for s in stacks), default=0.0) or 1.0
    width = (_W - _PAD - 10) / max(1, len(labels))
    scale = (_H - _PAD - 10) / top
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
                f'<rect class="mark" x="{_PAD + i * width + 1:.1f}" y="{y:.1f}" '
                f'width="{max(1.0, width - 2):.1f}" height="{height:.1f}" '
                f'fill="{_PALETTE[j % len(_PALETTE)]}"><title>{escape(labels[i])} '
                f"{escape(name)}: {escape(cell(value))}</title></rect>"
            )
    return _svg(_axes(labels, top, unit) + "".join(marks))


def _lines(labels: list[str], series: dict[str, list[float]], unit: str = "") -> str:
    top = max((max(v, default=0.0) for v in series.values()), default=0.0) or 1.0
    width = (_W - _PAD - 10) / max(1, len(labels))
    scale = (_H - _PAD - 10) / top
    marks = []
    for j, (name, values) in enumerate(series.items()):
        points = " ".join(
            f"{_PAD + (i + 0.5) * width:.1f},{_H - _PAD - v * scale:.1f}"
            for i, v in enumerate(values)
        )
        if len(values) == 1:  # one bucket: a dot, not an invisible line
            x, y = points.split(",")
            marks.append(
                f'<circle class="mark" cx="{x}" cy="{y}" r="4" fill="{_PALETTE[j]}">'
                f"<title>{escape(name)}</title></circle>"
            )
        else:
            marks.append(
                f'<polyline class="mark" points="{points}" fill="none" stroke-width="2" '
                f'stroke="{_PALETTE[j]}"><title>{escape(name)}</title></polyline>'
            )
    return _svg(_axes(labels, top, unit) + "".join(marks))


def _svg(body: str) -> str:
    return f'<svg class="chart" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}">{body}</svg>'


def _figure(caption: str, svg: str, legend: list[str]) -> str:
    return f"<figure><figcaption>{escape(caption)}</figcaption>{svg}{_legend(legend)}</figure>"


def _charts(report: dict[str, Any]) -> list[str]:
    points = report["series"]["points"]
    labels = [p["t"] for p in points]
    teams = sorted({t for p in points for t in p["cost_by_team"]})
    tiers = sorted({t for p in points for t in p["tiers"]})
    figures = [
        _figure(
            f"Cost by team over time (USD per {report['series']['bucket']})",
            _stacked(labels, [p["cost_by_team"] for p in points], teams, " $"),
            teams,
        ),
        _figure(
            "Tier mix (share of requests answered by each tier)",
            _stacked(
                labels,
                [{t: n / p["requests"] for t, n in p["tiers"].items()} for p in points],
                tiers,
            ),
            tiers,
        ),
        _figure(
            "Escalation rate over time",
            _lines(labels, {"escalation rate": [p["escalation_rate"] or 0.0 for p in points]}),
            ["escalation rate"],
        ),
    ]
    cumulative: dict[str, list[float]] = {"always large": [], "actual": [], "always small": []}
    large = actual = small = 0.0
    for p in points:
        large += p["counterfactual_cost_usd"]
        actual += p["cost_usd"]
        small += p["always_small_usd"]
        cumulative["always large"].append(large)
        cumulative["actual"].append(actual)
        cumulative["always small"].append(small)
    figures.append(
        _figure(
            "Savings vs always-large (cumulative cost, USD)",
            _lines(labels, cumulative, " $"),
            list(cumulative),
        )
    )
    for tier in report["tiers"]:
        counts = tier["confidence_histogram"]
        if sum(counts):
            bins = [f"{i / 10:.1f}" for i in range(10)]
            figures.append(
                _figure(
                    f"Confidence histogram — tier {tier['tier']}",
                    _stacked(bins, [{"answers": float(n)} for n in counts], ["answers"]),
                    ["answers"],
                )
            )
    classifier = report["classifier"]
    if classifier["scored"]:
        bins = [f"{i / 10:.1f}" for i in range(10)]
        series = {"this window": [float(n) for n in classifier["histogram"]]}
        if classifier["previous_window_histogram"]:
            series["previous window"] = [float(n) for n in classifier["previous_window_histogram"]]
        figures.append(_figure("Classifier score distribution", _lines(bins, series), list(series)))
    return figures


def _outcomes(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items()))


def _table(report: dict[str, Any]) -> str:
    head = "".join(f'<th class="k">{escape(d)}</th>' for d in report["by"])
    head += "".join(f"<th>{escape(title)}</th>" for _, title in COLUMNS)
    head += "<th>p50 ms</th><th>p95 ms</th><th>p99 ms</th>"
    rows = []
    for group in [*report["groups"], {"key": {d: "all" for d in report["by"]}, **report["totals"]}]:
        cells = "".join(f'<td class="k">{escape(v)}</td>' for v in group["key"].values())
        cells += "".join(f"<td>{escape(cell(group[name]))}</td>" for name, _ in COLUMNS)
        cells += "".join(
            f"<td>{escape(cell(group['latency_ms'][p]))}</td>" for p in ("p50", "p95", "p99")
        )
        rows.append(f"<tr>{cells}</tr>")
    tiers = "".join(
        f'<tr><td class="k">{escape(t["tier"])}</td><td>{t["attempts"]:,}</td>'
        f'<td class="k">{escape(_outcomes(t["outcomes"]))}</td>'
        f"<td>{escape(cell(t['cost_usd']))}</td>"
        + "".join(f"<td>{escape(cell(v))}</td>" for v in t["latency_ms"].values())
        + "".join(f"<td>{escape(cell(v))}</td>" for v in t["ttft_ms"].values())
        + "</tr>"
        for t in report["tiers"]
    )
    return (
        f"<table><tr>{head}</tr>{''.join(rows)}</table><h2>Tiers</h2><table><tr>"
        '<th class="k">tier</th><th>attempts</th><th class="k">outcomes</th><th>cost $</th>'
        "<th>latency p50</th><th>p95</th><th>p99</th><th>ttft p50</th><th>p95</th><th>p99</th>"
        f"</tr>{tiers}</table>"
    )


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


def render_html(report: dict[str, Any]) -> str:
    base = report["baselines"]
    totals = report["totals"]
    drift = report["classifier"]["psi"]
    window = time_window(report)
    summary = (
        f"{totals['requests']:,} requests · cost ${cell(base['actual_usd'])} · always-large "
        f"${cell(base['always_large_usd'])} · always-small ${cell(base['always_small_usd'])} · "
        f"saved {cell(totals['saved_pct'])}% · "
        f"escalation rate {cell(totals['escalation_rate'])} · "
        f"classifier drift (PSI) {'—' if drift is None else f'{drift:.3f}'}"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>cascade audit</title><style>{_STYLE}</style></head><body>"
        f"<h1>cascade route audit</h1><p>{escape(report['ledger'])} · {escape(window)}</p>"
        f"<p>{escape(summary)}</p>"
        f'<div class="grid">{"".join(_charts(report))}</div>'
        f"<h2>By {escape(', '.join(report['by']))}</h2>{_table(report)}{_changes(report)}"
        f"<script>{_SCRIPT}</script></body></html>"
    )
