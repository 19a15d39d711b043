from __future__ import annotations

import random

import numpy as np
import pytest

from router.audit.aggregate import Aggregator
from router.audit.report import figures
from router.audit.sketch import LogHistogram, psi
from router.audit.text import render_csv


def test_quantiles_are_within_two_percent_in_bounded_memory() -> None:
    rng = random.Random(1)
    values = [rng.lognormvariate(5, 1.5) for _ in range(100_000)]
    sketch = LogHistogram()
    for value in values:
        sketch.add(value)
    for q in (0.5, 0.95, 0.99):
        exact = float(np.quantile(values, q))
        assert sketch.quantile(q) == pytest.approx(exact, rel=0.02)
    assert len(sketch.buckets) < 800  # ~10 orders of magnitude at 2% per bucket
    assert LogHistogram().quantile(0.5) is None


def test_psi_is_zero_for_the_same_mix_and_large_for_a_shift() -> None:
    assert psi([10, 20, 30], [20, 40, 60]) == pytest.approx(0.0)
    assert psi([50, 30, 20, 0], [5, 15, 30, 50]) > 0.25  # empty bins are floored, not infinite
    assert psi([0, 0], [1, 2]) is None


def attempt(
    tier: str, backend: str, outcome: str, cost: float, **extra: object
) -> dict[str, object]:
    return {"tier": tier, "backend": backend, "outcome": outcome, "cost_usd": cost,
            "prompt_tokens": 10, "completion_tokens": 5, "latency_ms": 100.0,
            "ttft_ms": 20.0, "confidence": None, **extra}  # fmt: skip


def record(
    team: str, attempts: list[dict[str, object]], status: str = "ok", **extra: object
) -> dict[str, object]:
    return {"ts": "2026-11-23T10:00:00.000Z", "team": team, "route": "auto",
            "final_tier": attempts[-1]["tier"] if attempts else None, "final_model": "m",
            "status": status, "attempts": attempts, "latency_ms": 120.0,
            "cost_usd": sum(float(a["cost_usd"]) for a in attempts),  # type: ignore[arg-type]
            "counterfactual_cost_usd": 0.01, "classifier": None, **extra}  # fmt: skip


def test_group_figures_by_hand() -> None:
    agg = Aggregator(["team"])
    small = {"confidence": {"value": 0.9}}
    agg.add(record("a", [attempt("small", "llama_cpp", "accepted", 0.001, **small)]))
    agg.add(record("a", [attempt("small", "llama_cpp", "escalated", 0.001),
                         attempt("large", "openai", "accepted", 0.01)]))  # fmt: skip
    agg.add(record("a", [attempt("small", "llama_cpp", "shed", 0.0),
                         attempt("large", "openai", "accepted", 0.01)]))  # fmt: skip
    degraded = [attempt("small", "llama_cpp", "degraded", 0.001),
                attempt("large", "openai", "timeout", 0.0)]  # fmt: skip
    agg.add(record("a", degraded, status="degraded"))
    agg.add(record("b", [], status="invalid"))
    a = figures(agg.groups[("a",)])
    assert a["requests"] == 4
    assert a["prompt_tokens"] == 70 and a["completion_tokens"] == 35
    assert a["escalation_rate"] == 0.25
    # the local tier answered in 3 requests (accepted, escalated, degraded); kept 1
    assert a["local_acceptance_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert (a["shed"], a["degraded"], a["errors"], a["invalid"]) == (1, 1, 0, 0)
    assert a["cost_usd"] == pytest.approx(0.023)
    assert a["counterfactual_cost_usd"] == pytest.approx(0.04)
    assert a["saved_usd"] == pytest.approx(0.017)
    assert a["saved_pct"] == pytest.approx(42.5)
    assert agg.total.always_small == pytest.approx(0.003)  # first attempts only
    assert figures(agg.groups[("b",)])["invalid"] == 1
    assert agg.tiers["small"].confidence.counts[9] == 1
    # what the client got: a cut-off stream is an error; a client that left is counted apart
    agg.add(record("c", [attempt("large", "openai", "error", 0.01)], "upstream_truncated"))
    agg.add(record("c", [attempt("large", "openai", "client_gone", 0.0)], "client_gone"))
    c = figures(agg.groups[("c",)])
    assert (c["errors"], c["client_gone"], c["requests"]) == (1, 1, 2)
    # skips by the request feature the tier lacked
    skipped = attempt("small", "llama_cpp", "skipped", 0.0, error="skipped: image, tools")
    agg.add(record("d", [skipped, attempt("large", "openai", "accepted", 0.01)]))
    assert agg.tiers["small"].skips == {"image": 1, "tools": 1}
    # what the team's budget did: counted per group
    local = [attempt("small", "llama_cpp", "accepted", 0.0)]
    agg.add(record("e", local, "degraded", budget={"decision": "degraded", "share": 0.9}))
    agg.add(record("e", local, "degraded", budget={"decision": "local_only", "share": 1.0}))
    agg.add(record("e", local))
    assert figures(agg.groups[("e",)])["budget_decisions"] == {"degraded": 1, "local_only": 1}
    with pytest.raises(ValueError, match="unknown week"):
        Aggregator(["team", "week"])


def test_csv_cannot_smuggle_a_formula() -> None:
    agg = Aggregator(["team"])
    agg.add(record('=HYPERLINK("http://evil")', [attempt("small", "llama_cpp", "accepted", 0.0)]))
    report = {
        "by": ["team"],
        "groups": [{"key": {"team": k[0]}, **figures(g)} for k, g in agg.groups.items()],
    }
    line = render_csv(report).splitlines()[1]
    assert line.startswith("'=HYPERLINK") or line.startswith("\"'=HYPERLINK")


def test_cost_is_split_by_where_its_tokens_came_from() -> None:
    """How much of a team's spend the provider reported, the gateway counted, or was
    estimated (a stream cut off, an answer left); old records count as reported or counted."""
    agg = Aggregator(["team"])
    agg.add(record("a", [attempt("large", "openai", "accepted", 0.004, usage_source="reported")]))
    agg.add(record("a", [attempt("large", "openai", "error", 0.001, usage_source="estimated")]))
    agg.add(record("a", [attempt("small", "llama_cpp", "accepted", 0.0002, local=True)]))
    agg.add(record("a", [attempt("large", "openai", "accepted", 0.002)]))  # before the field
    found = figures(agg.groups[("a",)])
    assert found["cost_by_usage_source"] == {
        "counted": pytest.approx(0.0002),
        "estimated": pytest.approx(0.001),
        "reported": pytest.approx(0.006),
    }
    assert found["estimated_usd"] == pytest.approx(0.001)
    report = {"by": ["team"], "groups": [{"key": {"team": "a"}, **found}]}
    header, row = render_csv(report).splitlines()[:2]
    assert "estimated_usd" in header.split(",")
    assert row.split(",")[header.split(",").index("estimated_usd")] == "0.001"
