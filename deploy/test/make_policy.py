"""The deploy test's policy: the shipped default policy, its large tier priced high enough
that a small team budget is reached in a few requests, two teams (`search` with a budget of
$0.10 a day, `ops` with none), shadow checks on every locally accepted answer, and two
routes that surely reach the local tier (one always escalating, one always keeping it).

    python deploy/test/make_policy.py policies/default.yaml OUT.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

BUDGET_USD = 0.10  # smoke.py reads it from the policy
PRICE_PER_1M = 1000.0  # $0.001 a token: a fake answer (16 tokens) costs $0.016


def main(source: str, out: str) -> None:
    policy = yaml.safe_load(Path(source).read_text())
    policy["tiers"]["large"]["price"] = {
        "input_per_1m": PRICE_PER_1M,
        "output_per_1m": PRICE_PER_1M,
    }
    policy["teams"] = {
        "search": {"limits": {"usd_per_day": BUDGET_USD}},
        "ops": {"description": "no limits: its spend is still counted"},
    }
    policy["routes"]["auto"]["shadow"] = {"rate": 1.0, "usd_per_day": 5.0, "cap_store": "redis"}
    small, large = (step["tier"] for step in policy["routes"]["auto"]["cascade"])
    # routes that surely reach the local tier, so every dashboard panel has something to show:
    # one whose local answers are always rejected (escalations), one whose are always kept
    # (local decode speed, and shadow checks of accepted answers)
    policy["routes"]["escalating"] = {
        "cascade": [{"tier": small, "acceptance": {"threshold": 1.0}}, {"tier": large}]
    }
    policy["routes"]["local"] = {
        "cascade": [{"tier": small, "acceptance": {"threshold": 0.0}}, {"tier": large}],
        "shadow": {"rate": 1.0, "usd_per_day": 5.0, "cap_store": "redis"},
    }
    Path(out).write_text(yaml.safe_dump(policy, sort_keys=False))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
