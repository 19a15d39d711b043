"""`cascade policy explain` with the thresholds a server serves (autotune) or the file's."""

from __future__ import annotations

from router.explain import ServedThresholds, explain, render
from router.policy.loader import LoadedPolicy, parse_policy

POLICY = b"""
tiers: {small: {type: openai, model: s}, large: {type: openai, model: l}}
routes:
  auto:
    cascade:
      - {tier: small, acceptance: {method: mean_prob, threshold: 0.5}}
      - {tier: large}
    shadow:
      rate: 0.1
      usd_per_day: 1
      target_quality: 0.9
      autotune: {min_threshold: 0.3, max_threshold: 0.7}
"""


def _loaded() -> LoadedPolicy:
    return parse_policy(POLICY)


def test_the_files_thresholds_are_shown_and_said_to_be_the_files() -> None:
    result = explain(_loaded(), "Hi")
    assert result["plan"][0]["acceptance"]["threshold"] == 0.5
    assert result["thresholds"].startswith("the policy file's")
    assert "thresholds  the policy file's" in render(result)


def test_a_servers_tuned_threshold_replaces_the_files_for_the_same_version() -> None:
    served = ServedThresholds.of(
        "http://gw:8080",
        {
            "version": _loaded().version,
            "tuned": [{"route": "auto", "tier": "small", "threshold": 0.62}],
        },
    )
    result = explain(_loaded(), "Hi", served=served)
    assert result["plan"][0]["acceptance"]["threshold"] == 0.62
    assert result["thresholds"] == "in force on http://gw:8080 (autotuned: auto/small 0.62)"


def test_a_server_on_another_policy_version_changes_nothing() -> None:
    served = ServedThresholds.of(
        "http://gw:8080",
        {"version": "v0", "tuned": [{"route": "auto", "tier": "small", "threshold": 0.62}]},
    )
    result = explain(_loaded(), "Hi", served=served)
    assert result["plan"][0]["acceptance"]["threshold"] == 0.5
    assert "serves policy v0, not this file" in result["thresholds"]
