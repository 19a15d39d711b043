"""Labelled traffic for checking `cascade policy simulate` against reality (the integration
test's short version and bench/simulate.py's full one).

Three teams send benchmark questions with short answers through `cascade serve`: the bundled
model first (kept by mean token probability), the gold-answer upstream as the large tier
and the shadow checks' reference. Policy A records the traffic; candidate B differs in a
threshold, a rule that moves team beta to the large tier alone, and a budget that degrades
team gamma to the local tier once it has spent half of what it spent under A. The same
traffic is then served under B, so what `simulate` predicted from A's ledger can be held
against B's own.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from classifiers.datasets import Item
from router.ledger import open_reader, parse_ledger_url
from router.policy import LoadedPolicy, parse_policy
from router.simulate import simulate
from tests.support.cascade import read_ledger
from tests.support.processes import ServerProcess, start_cascade
from tests.support.shadow_traffic import policy, start_gold

KEYS = {
    "alpha": "sk-simulate-alpha-0001",
    "beta": "sk-simulate-beta-0002",
    "gamma": "sk-simulate-gamma-0003",
}
TEAMS = tuple(KEYS)


def _teams(gamma_limits: str = "") -> str:
    lines = []
    for team, key in KEYS.items():
        lines.append(f"  {team}:")
        lines.append(f"    keys: [{{sha256: {hashlib.sha256(key.encode()).hexdigest()}}}]")
        if team == "gamma" and gamma_limits:
            lines.append(gamma_limits)
    return "\n".join(lines) + "\n"


def _policy(gold: ServerProcess, threshold: float, shadow_rate: float, rules: str) -> str:
    """The shadow-check traffic's policy (the bundled model, then the gold upstream), with a
    route to the large tier alone and `rules`."""
    remote = "  remote:\n    cascade: [{tier: large}]\ndefault_route: auto\n"
    return policy(gold, threshold=threshold, rate=shadow_rate) + remote + rules


def policy_a(gold: ServerProcess, *, shadow_rate: float = 0.3) -> str:
    return _policy(gold, 0.45, shadow_rate, "") + "teams:\n" + _teams()


def policy_b(
    gold: ServerProcess, gamma_usd_per_day: float, degrade_at: float, *, shadow_rate: float = 0.3
) -> str:
    """A's with a higher threshold, team beta moved to the large tier alone, and team gamma
    degraded to the local tier once it has spent `degrade_at` of its day's budget."""
    rules = "rules:\n  - {name: beta-remote, match: {teams: [beta]}, route: remote}\n"
    limits = (
        f"    limits: {{usd_per_day: {gamma_usd_per_day}}}\n"
        f"    budget_routing: {{degrade_at: {degrade_at}}}"
    )
    return _policy(gold, 0.6, shadow_rate, rules) + "teams:\n" + _teams(limits)


@dataclass(frozen=True)
class Run:
    ledger: str  # URL
    requests: int


def serve_traffic(policy: str, found: list[Item], folder: Path, name: str) -> Run:
    """Every item once, in order, from team TEAMS[i % 3], through `cascade serve` on
    `policy`; the ledger is complete when this returns (the server drained and stopped)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(policy)
    database = folder / f"{name}.db"
    database.unlink(missing_ok=True)
    ledger = f"sqlite:///{database}"
    server = start_cascade(folder / f"{name}.yaml", ledger, folder / f"{name}.log")
    try:
        clients = {
            team: openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
            for team, key in KEYS.items()
        }
        for index, item in enumerate(found):
            client = clients[TEAMS[index % len(TEAMS)]]
            client.chat.completions.create(
                model="auto",
                messages=[{"role": "user", "content": item.prompt}],
                max_tokens=item.max_tokens,
                temperature=0,
            )
        for client in clients.values():
            client.close()
        time.sleep(2)  # the last shadow checks
    finally:
        server.stop()
    return Run(ledger, len(found))


@dataclass(frozen=True)
class Check:
    predicted: dict[str, Any]  # simulate B on A's ledger
    actual: dict[str, Any]  # simulate B on B's own ledger: its `actual` side is B as served


def gamma_budget(ledger: str) -> tuple[float, float]:
    """Gamma's day budget and the share of it B degrades gamma at: half of what it spent
    under A, in a budget of four times the most a request of its reserves at least, so
    that each request it sends before it is degraded fits (a client that is refused goes
    away, and the traffic with it). Prices as in `_policy`: $1 and $2 per 1M tokens, on
    both tiers at most."""
    records = [r for r in read_ledger(ledger) if r.get("team") == "gamma" and not r.get("kind")]
    spent = float(sum(r["cost_usd"] for r in records))
    most = max((p + 2 * o) / 1e6 for p, o in (r["bound_tokens"] for r in records))
    budget = max(spent, 4 * most)
    return round(budget, 8), round(0.5 * spent / budget, 4)


def predict_and_run(found: list[Item], folder: Path, *, shadow_rate: float = 0.3) -> Check:
    """A's traffic, B predicted from A's ledger, then B's traffic (gamma's budget: what it
    spent under A, so B degrades it once 30% of that is spent)."""
    folder.mkdir(parents=True, exist_ok=True)
    gold = start_gold(found, folder)
    try:
        a = serve_traffic(policy_a(gold, shadow_rate=shadow_rate), found, folder, "a")
        budget, degrade_at = gamma_budget(a.ledger)
        candidate = policy_b(gold, budget, degrade_at, shadow_rate=shadow_rate)
        loaded = parse_policy(candidate.encode(), env={})
        predicted = _simulate(a.ledger, loaded)
        b = serve_traffic(candidate, found, folder, "b")
        actual = _simulate(b.ledger, loaded)
    finally:
        gold.stop()
    return Check(predicted, actual)


def check_again(folder: Path) -> Check:
    """The prediction and the actual of a run `predict_and_run` left in `folder` (its two
    ledgers and B's file), simulated again: for changing the simulation, not the traffic."""
    loaded = parse_policy((folder / "b.yaml").read_bytes(), env={})
    return Check(
        _simulate(f"sqlite:///{folder / 'a.db'}", loaded),
        _simulate(f"sqlite:///{folder / 'b.db'}", loaded),
    )


def _simulate(url: str, loaded: LoadedPolicy) -> dict[str, Any]:
    target = parse_ledger_url(url)
    return simulate(lambda: open_reader(target), loaded, source=url)


def within(predicted: float, actual: float, share: float = 0.03) -> bool:
    return abs(predicted - actual) <= share * abs(actual)


def _off(predicted: float, actual: float) -> str:
    if not actual:
        return "exact" if predicted == actual else "—"
    return f"{100 * (predicted - actual) / actual:+.2f}%"


def _quality(figures: dict[str, Any]) -> str:
    found = figures["quality"]["shadow"]
    if found is None:
        return "—"
    low, high = found["interval_95"]
    return f"{found['estimate']:.1%} ({low:.1%}-{high:.1%}, n={found['n']})"


def _within(value: float, interval: list[float] | None) -> str:
    if interval is None:
        return "no interval"
    return "inside" if interval[0] <= value <= interval[1] else "OUTSIDE"


def rows(check: Check) -> list[list[str]]:
    """[figure, predicted, actual, off by, actual inside the predicted interval?] for the
    totals and each team."""
    scopes = [("all", check.predicted["totals"]["predicted"], check.actual["totals"]["actual"])]
    actual_teams = {t["team"]: t["actual"] for t in check.actual["teams"]}
    for team in check.predicted["teams"]:
        scopes.append((team["team"], team["predicted"], actual_teams[team["team"]]))
    found = []
    for name, p, a in scopes:
        interval = p["cost_interval_95"]
        shown = f"${p['cost_usd']:.6f}"
        if interval is not None:
            shown += f" (${interval[0]:.6f}-${interval[1]:.6f})"
        quality, real = p["quality"]["shadow"], a["quality"]["shadow"]
        quality_inside = "—"
        if quality is not None and real is not None:
            quality_inside = _within(real["estimate"], quality["interval_95"])
        found += [
            [
                f"{name}: cost",
                shown,
                f"${a['cost_usd']:.6f}",
                _off(p["cost_usd"], a["cost_usd"]),
                _within(a["cost_usd"], interval),
            ],
            [
                f"{name}: answered locally",
                f"{p['local_share']:.2%}",
                f"{a['local_share']:.2%}",
                _off(p["local_share"], a["local_share"]),
                "",
            ],
            [
                f"{name}: escalations",
                f"{p['escalations']:,}",
                f"{a['escalations']:,}",
                _off(p["escalations"], a["escalations"]),
                "",
            ],
            [f"{name}: local quality (shadow)", _quality(p), _quality(a), "", quality_inside],
        ]
    return found
