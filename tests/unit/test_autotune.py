"""shadow.autotune: a route's acceptance threshold re-tuned from its own shadow checks, within
the policy's bounds, each change recorded with the policy version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from classifiers.calibrate import calibrate
from router.audit import build_report
from router.audit.aggregate import Aggregator
from router.audit.html import render_html
from router.audit.report import _tune
from router.audit.text import render_table
from router.budgets.shaping import shaped
from router.ledger import open_reader, parse_ledger_url
from router.policy import PolicyError, parse_policy
from router.policy.model import AcceptanceSpec, AutotuneSpec
from router.routing import Facts, decide
from router.shadow.autotune import Observed, Tuner, TuneRecord

STEP = AcceptanceSpec(method="mean_prob", threshold=0.5)
BOUNDS = AutotuneSpec(
    min_threshold=0.2, max_threshold=0.8, min_checks=20, window=40, every_checks=10, max_step=0.1
)


def _tuner() -> tuple[Tuner, list[TuneRecord]]:
    changes: list[TuneRecord] = []
    return Tuner(changes.append, lambda _: None), changes


def _feed(
    tuner: Tuner,
    checks: list[tuple[float, bool]],
    *,
    spec: AcceptanceSpec = STEP,
    autotune: AutotuneSpec = BOUNDS,
    target: float = 0.9,
) -> list[TuneRecord]:
    made = []
    for value, agree in checks:
        change = tuner.observe(
            Observed("auto", "small", value, agree, spec, autotune, target, policy_version="v1")
        )
        if change is not None:
            made.append(change)
    return made


def _checks(n: int, seed: int = 0) -> list[tuple[float, bool]]:
    """Answers right more often the higher their value: P(right) = value."""
    rng = np.random.default_rng(seed)
    values = rng.random(n)
    return [(float(v), bool(rng.random() < v)) for v in values]


def test_nothing_changes_before_min_checks_then_every_few_checks() -> None:
    tuner, recorded = _tuner()
    assert _feed(tuner, _checks(19)) == []
    assert tuner.acceptance("auto", "small", STEP, BOUNDS) is STEP
    made = _feed(tuner, _checks(1, seed=1))  # the 20th check: min_checks reached
    assert len(made) == 1 and recorded == made
    assert _feed(tuner, _checks(9, seed=2)) == []  # every_checks: 10 new ones first


def test_the_threshold_is_the_windows_calibration_bounded_and_stepped() -> None:
    tuner, _ = _tuner()
    checks = _checks(40, seed=3)
    (first,) = _feed(tuner, checks[:20])
    scores = np.array([v for v, _ in checks[:20]])
    agree = np.array([a for _, a in checks[:20]])
    wanted = calibrate(scores, agree, np.ones(20, dtype=bool), quality=0.9).threshold
    assert first.wanted == wanted
    bounded = min(max(wanted, 0.2), 0.8)
    assert first.threshold_from == 0.5
    assert first.threshold_to == round(min(max(bounded, 0.4), 0.6), 4)  # max_step 0.1
    assert first.policy_threshold == 0.5 and first.policy_version == "v1"
    assert (first.min_threshold, first.max_threshold, first.checks) == (0.2, 0.8, 20)
    in_force = tuner.acceptance("auto", "small", STEP, BOUNDS)
    assert in_force.threshold == first.threshold_to and in_force.method == "mean_prob"
    escalated = scores < first.threshold_to
    assert first.escalated_share == pytest.approx(escalated.mean())
    assert first.estimated_quality == pytest.approx(np.where(escalated, True, agree).mean())


def test_it_walks_to_the_bound_one_step_at_a_time() -> None:
    """Every local answer wrong and a target of 1: only escalating all reaches it; the
    threshold rises by max_step per re-tuning and stops at max_threshold."""
    tuner, _ = _tuner()
    made = _feed(tuner, [(0.5 + i / 200, False) for i in range(80)], target=1.0)
    assert [c.threshold_to for c in made] == [0.6, 0.7, 0.8]  # then no change is no record
    assert all(c.wanted >= 1 for c in made)  # beyond every value
    assert tuner.acceptance("auto", "small", STEP, BOUNDS).threshold == 0.8


def test_the_policy_takes_back_its_threshold_when_the_step_or_bounds_change() -> None:
    tuner, _ = _tuner()
    _feed(tuner, [(0.9, True)] * 20)  # all right: down to the lowest bound, one step
    assert tuner.acceptance("auto", "small", STEP, BOUNDS).threshold == 0.4
    edited = STEP.model_copy(update={"threshold": 0.6})
    assert tuner.acceptance("auto", "small", edited, BOUNDS) is edited
    wider = BOUNDS.model_copy(update={"min_threshold": 0.1})
    assert tuner.acceptance("auto", "small", STEP, wider) is STEP
    assert tuner.acceptance("auto", "small", STEP, None) is STEP  # autotune removed
    same = AcceptanceSpec(method="mean_prob", threshold=0.5)  # a reload of the same file
    assert tuner.acceptance("auto", "small", same, BOUNDS).threshold == 0.4
    # tuning again starts from the edited file's threshold, on the window it kept
    (change,) = _feed(tuner, [(0.9, True)] * 10, spec=edited)
    assert (change.threshold_from, change.threshold_to, change.checks) == (0.6, 0.5, 30)


def test_a_method_change_starts_a_new_window() -> None:
    tuner, _ = _tuner()
    _feed(tuner, [(0.9, True)] * 19)
    learned = AcceptanceSpec(method="min_prob", threshold=0.5)
    assert _feed(tuner, [(0.9, True)] * 19, spec=learned) == []  # 19 each, not 38
    assert len(_feed(tuner, [(0.9, True)], spec=learned)) == 1


POLICY = """
tiers:
  small: {type: openai, model: s}
  large: {type: openai, model: m}
routes:
  auto:
    cascade:
      - {tier: small, acceptance: {threshold: 0.5}}
      - {tier: large}
    shadow:
      rate: 0.1
      usd_per_day: 1
      target_quality: 0.9
      autotune: {min_threshold: 0.3, max_threshold: 0.7}
"""


def test_the_policy_accepts_autotune_with_a_target_and_bounds() -> None:
    spec = parse_policy(POLICY.encode(), env={}).policy.routes["auto"].shadow
    assert spec is not None and spec.autotune is not None
    assert (spec.autotune.min_checks, spec.autotune.every_checks) == (200, 50)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("      target_quality: 0.9\n", ""), "autotune needs target_quality"),
        (("min_threshold: 0.3", "min_threshold: 0.8"), "min_threshold must not exceed"),
        (("{min_threshold: 0.3,", "{min_checks: 500, window: 100, min_threshold: 0.3,"), "window"),
        (("{tier: small, acceptance: {threshold: 0.5}}", "{tier: small}"), "acceptance threshold"),
    ],
)
def test_the_policy_refuses_autotune_it_cannot_honour(edit: tuple[str, str], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(POLICY.replace(*edit).encode(), env={})


def test_the_audit_lists_threshold_changes_not_as_requests() -> None:
    tuner, recorded = _tuner()
    _feed(tuner, [(0.9, True)] * 20)
    aggregator = Aggregator(["route"])
    aggregator.add(orjson.loads(orjson.dumps(recorded[0])))
    assert aggregator.total.requests == 0 and len(aggregator.tunes) == 1
    shown = _tune(aggregator.tunes[0])
    assert (shown["route"], shown["threshold_from"], shown["threshold_to"]) == ("auto", 0.5, 0.4)
    assert shown["policy_version"] == "v1"


def test_the_table_and_html_reports_show_the_changes(tmp_path: Path) -> None:
    tuner, recorded = _tuner()
    _feed(tuner, [(0.9, True)] * 20)
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_bytes(orjson.dumps(recorded[0]) + b"\n")
    reader = open_reader(parse_ledger_url(f"jsonl:///{ledger}"))
    try:
        report = build_report(reader, by=["route"], since=None, until=None, source="test")
    finally:
        reader.close()
    assert report["totals"]["requests"] == 0
    table = render_table(report)
    assert "threshold changes (shadow.autotune)" in table and "0.5 → 0.4" in table
    html = render_html(report)
    assert "Threshold changes" in html and "<td>0.4</td>" in html


REROUTED = """
tiers:
  small: {type: openai, model: s}
  large: {type: openai, model: m}
routes:
  auto:
    cascade: [{tier: large}]
  cheap:
    cascade:
      - {tier: small, acceptance: {threshold: 0.5}}
      - {tier: large}
    shadow:
      rate: 0.1
      usd_per_day: 1
      target_quality: 0.9
      autotune: {min_threshold: 0.2, max_threshold: 0.8, min_checks: 20, window: 40,
                 every_checks: 10, max_step: 0.1}
teams:
  search:
    limits: {usd_per_day: 1}
    budget_routing: {degrade_at: 0.5, route: cheap}
"""


def test_a_budget_rerouted_request_is_judged_at_the_cheaper_routes_tuned_threshold() -> None:
    policy = parse_policy(REROUTED.encode(), env={}).policy
    cheap = policy.routes["cheap"]
    assert cheap.shadow is not None and cheap.shadow.autotune is not None
    step = cheap.cascade[0].acceptance
    assert step is not None
    tuner, _ = _tuner()
    for _ in range(20):  # all right: one step down, 0.5 -> 0.4
        tuner.observe(Observed("cheap", "small", 0.9, True, step, cheap.shadow.autotune, 0.9, "v1"))
    facts = Facts("auto", "search", question="What is 2 + 2?")
    planned = decide(policy, {}, facts, tuner)
    assert planned is not None and planned.route == "auto"
    found = shaped(
        planned,
        "rerouted",
        facts,
        policy=policy,
        routers={},
        local_tiers=frozenset({"small"}),
        tuned=tuner,
    )
    assert found is not None and found.route == "cheap"
    acceptance = found.plan.steps[0].acceptance
    assert acceptance is not None and acceptance.threshold == 0.4
