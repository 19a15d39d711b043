"""A simulation as one self-contained page, in the audit report's style (router/audit/html.py):
recorded beside candidate for each team, then the table, what was not replayed and why."""

from __future__ import annotations

from collections import defaultdict
from html import escape
from typing import Any

from router.audit.html import SCRIPT, STYLE, figure, stacked
from router.simulate.render import HEADER, cells, summary

# each team's bar as it is now, then under the candidate (labelled `new`: the team's name
# once, so that every label fits under its bar)
_SIDES = (("actual", ""), ("predicted", "new"))


def _per_team(report: dict[str, Any]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    teams: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for group in report["groups"]:
        for side, _ in _SIDES:
            if group[side]["requests"]:
                teams[group["team"]][side].append({"route": group["route"], **group[side]})
    return teams


def _charts(report: dict[str, Any]) -> list[str]:
    teams = _per_team(report)
    labels, tiers, costs, local = [], [], [], []
    for team in sorted(teams):
        for side, title in _SIDES:
            found = teams[team][side]
            labels.append(title or team)
            mix: dict[str, float] = defaultdict(float)
            spent: dict[str, float] = defaultdict(float)
            answered = requests = 0
            for group in found:
                for tier, n in group["tiers"].items():
                    mix[tier] += n
                spent[group["route"]] += group["cost_usd"]
                requests += group["requests"]
                answered += round((group["local_share"] or 0.0) * group["requests"])
            tiers.append(dict(mix))
            costs.append(dict(spent))
            local.append({"answered locally": answered / requests if requests else 0.0})
    tier_names = sorted({t for stack in tiers for t in stack})
    routes = sorted({r for stack in costs for r in stack})
    return [
        figure(
            "Cost by team: now, then under the candidate (new), USD by route",
            stacked(labels, costs, routes, "money"),
            routes,
        ),
        figure(
            "Requests by the tier that answered: now, then under the candidate (new)",
            stacked(labels, tiers, tier_names, "count"),
            tier_names,
        ),
        figure(
            "Share answered by an in-process tier: now, then under the candidate (new)",
            stacked(labels, local, ["answered locally"], "share"),
            ["answered locally"],
        ),
    ]


def _table(report: dict[str, Any]) -> str:
    head = "".join(f'<th class="k">{escape(h)}</th>' for h in HEADER[:2])
    head += "".join(f"<th>{escape(h)}</th>" for h in HEADER[2:])
    totals = {"team": "all", "route": "", **report["totals"]}
    rows = []
    for group in [*report["groups"], totals]:
        keys = "".join(f'<td class="k">{escape(group[k])}</td>' for k in ("team", "route"))
        values = "".join(f"<td>{escape(c)}</td>" for c in cells(group))
        rows.append(f"<tr>{keys}{values}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _left_out(report: dict[str, Any]) -> str:
    reasons = report["not_replayed"]["reasons"]
    items = (
        "".join(f"<li>{n:,} — {escape(reason)}</li>" for reason, n in reasons.items())
        or "<li>none: every request was replayed</li>"
    )
    notes = "".join(f"<li>{escape(note)}</li>" for note in report["notes"])
    return (
        f"<h2>Not replayed</h2><ul>{items}</ul><h2>What a replay cannot know</h2><ul>{notes}</ul>"
    )


def render_html(report: dict[str, Any]) -> str:
    window = f"{report['first_record'] or '—'} → {report['last_record'] or '—'}"
    candidate = report["candidate"]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>cascade policy simulate</title><style>{STYLE}</style></head><body>"
        f"<h1>cascade policy simulate: {escape(candidate['source'])}</h1>"
        f"<p>{escape(report['ledger'])} · {escape(window)} · candidate version "
        f"{escape(candidate['version'])}</p>"
        f'<p class="summary">{escape(summary(report))}</p>'
        f'<div class="grid">{"".join(_charts(report))}</div>'
        f"<h2>By team and route (now → candidate)</h2>{_table(report)}{_left_out(report)}"
        '<p class="note">Costs under the candidate in brackets: the 95% interval of what '
        "tiers never called would have cost, priced from recorded token counts. Local "
        "quality: shadow checks and feedback on the local answers kept by their acceptance "
        "(not those a budget degraded), with 95% Wilson intervals.</p>"
        f"<script>{SCRIPT}</script></body></html>"
    )
