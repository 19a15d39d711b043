"""How the audit prints figures: money to cents (micro-dollars to three significant digits,
never e-notation), whole counts, percents; `--columns`; a team's headline."""

from __future__ import annotations

import pytest

from router.audit.aggregate import Aggregator
from router.audit.columns import COLUMNS, NARROW, pick
from router.audit.formats import count, money, quality, share
from router.audit.report import _headline
from router.audit.text import headline


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.0, "$0.00"),
        (12.345, "$12.35"),  # half-cents round like the rest of the page
        (1234567.891, "$1,234,567.89"),
        (0.01, "$0.01"),
        (0.009999, "$0.01"),  # rounds up to a cent: shown as one
        (0.00123456, "$0.00123"),
        (0.0000123456, "$0.0000123"),
        (6.6e-06, "$0.00000660"),
        (-0.25, "-$0.25"),
        (-0.0000123, "-$0.0000123"),
        (None, "—"),
    ],
)
def test_money_is_cents_or_three_significant_digits(value: float | None, shown: str) -> None:
    assert money(value) == shown
    assert "e" not in shown


def test_counts_are_whole_and_rates_are_percents() -> None:
    assert count(5002.0) == "5,002" and count(0) == "0" and count(None) == "—"
    assert share(0.3084) == "31%" and share(0.05) == "5.0%" and share(0.0) == "0%"
    assert share(1.0) == "100%" and share(None) == "—"


def test_quality_shows_the_interval_and_a_miss_of_the_target() -> None:
    value = {
        "estimate": 0.8,
        "interval_95": [0.49, 0.94],
        "checks": 10,
        "inconclusive": 1,
        "errors": 0,
        "target": 0.9,
        "below_target": True,
    }
    assert quality(value) == "80% (49-94%) n=10 below target 90%"
    empty = {**value, "estimate": None, "interval_95": None, "checks": 0, "below_target": None}
    assert quality(empty) == "no conclusive checks (1 other)"


def test_columns_default_narrow_all_or_named() -> None:
    assert tuple(c.name for c in pick(None)) == NARROW
    assert len(NARROW) <= 10
    assert pick("all") == COLUMNS
    assert [c.name for c in pick("requests, latency_p99")] == ["requests", "latency_p99"]
    with pytest.raises(ValueError, match="unknown nope"):
        pick("requests,nope")
    with pytest.raises(ValueError, match="none given"):
        pick(",")
    assert all(c.meaning for c in COLUMNS)  # the HTML's glossary has every one


def _request(team: str, cost: float, counterfactual: float) -> dict[str, object]:
    return {
        "ts": "2026-12-01T10:00:00.000Z",
        "team": team,
        "route": "auto",
        "status": "ok",
        "cost_usd": cost,
        "counterfactual_cost_usd": counterfactual,
        "final_tier": "large",
        "latency_ms": 100.0,
        "attempts": [
            {
                "tier": "large",
                "backend": "openai",
                "outcome": "accepted",
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "cost_usd": cost,
                "latency_ms": 100.0,
            }
        ],
    }


def test_a_team_headline_says_spent_saved_refused_and_shadow_spend_whatever_by_is() -> None:
    aggregator = Aggregator(["route"])  # grouped by route: the headline is still per team
    aggregator.add(_request("search", 0.25, 1.0))
    aggregator.add(_request("search", 0.25, 1.0))
    aggregator.add(
        {
            "kind": "rejections",
            "ts": "2026-12-01T10:00:01.000Z",
            "team": "search",
            "counts": [{"route": "auto", "reason": "budget", "count": 3}],
        }
    )
    aggregator.add(
        {
            "kind": "shadow",
            "ts": "2026-12-01T10:00:02.000Z",
            "team": "search",
            "route": "auto",
            "verdict": "agree",
            "cost_usd": 0.000123,
        }
    )
    team = _headline("search", aggregator.teams["search"])
    assert team["spent_usd"] == 0.5 and team["saved_usd"] == 1.5 and team["refused"] == 3
    assert team["shadow_spend_usd"] == pytest.approx(0.000123)
    assert headline(team) == (
        "search spent $0.50 on 2 requests; routing saved $1.50 (75%) of $2.00, what every "
        "answer from the largest tier would cost; 3 refused (budget 3); shadow checks cost "
        "$0.000123; local answers agreed with the reference: 100% (21-100%) n=1."
    )
