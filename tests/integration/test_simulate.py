"""`cascade policy simulate` held against reality, short (bench/simulate.py runs ~1,000
requests): labelled traffic from three teams through `cascade serve` with the bundled model
and the gold-answer upstream, recorded under policy A; candidate B (a higher threshold, a
rule that moves a team, a budget that degrades one) predicted from A's ledger, then the
same traffic served under B."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.shadow_traffic import items
from tests.support.simulate_traffic import Check, predict_and_run


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("simulate")


@pytest.fixture(scope="module")
def check(folder: Path) -> Check:
    return predict_and_run(items(12, seed=3), folder)


def test_what_simulate_predicts_is_what_the_candidate_does(check: Check) -> None:
    predicted, actual = check.predicted, check.actual
    assert predicted["not_replayed"]["requests"] == 0
    p, a = predicted["totals"]["predicted"], actual["totals"]["actual"]
    assert p["requests"] == a["requests"] == 48
    # where requests go is replayed exactly: the rule, the threshold, the budget
    assert p["tiers"] == a["tiers"]
    assert p["local_share"] == a["local_share"]
    assert p["escalations"] == a["escalations"]
    assert p["budget"] == a["budget"] and p["budget"].get("degraded", 0) > 0
    teams = {t["team"]: t for t in predicted["teams"]}
    assert teams["beta"]["predicted"]["local_share"] == 0  # moved to the large tier alone
    assert teams["beta"]["actual"]["local_share"] > 0
    # what the large tier would have charged for prompts it never saw is estimated, with
    # an interval that holds what B's own ledger says it charged
    low, high = p["cost_interval_95"]
    assert low <= a["cost_usd"] <= high
    assert abs(p["cost_usd"] - a["cost_usd"]) <= 0.15 * a["cost_usd"]
    # the local answers' quality: shadow checks of A's local answers, B's within its interval
    quality, real = p["quality"]["shadow"], a["quality"]["shadow"]
    if quality is not None and real is not None:
        assert quality["interval_95"][0] <= real["estimate"] <= quality["interval_95"][1]


def test_the_command_writes_each_format(check: Check, folder: Path) -> None:
    """The CLI over the ledger `cascade serve` wrote under A, with B's file: a pull-request
    comment, JSON for one team, an HTML page."""
    ledger = check.predicted["ledger"]
    candidate = folder / "b.yaml"

    def run(*args: str) -> str:
        found = subprocess.run(
            [sys.executable, "-m", "router", "policy", "simulate", "--ledger", ledger,
             "--policy", str(candidate), *args],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return found.stdout

    markdown = run("--format", "markdown")
    assert markdown.startswith("**cascade policy simulate**") and "| beta | remote |" in markdown
    report = json.loads(run("--format", "json", "--team", "beta"))
    assert {g["team"] for g in report["groups"]} == {"beta"}
    run("--format", "html", "--out", str(folder / "simulate.html"))
    page = (folder / "simulate.html").read_text()
    assert page.startswith("<!doctype html>") and page.count('<svg class="chart"') == 3
