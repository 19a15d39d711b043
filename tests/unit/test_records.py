from __future__ import annotations

import time

import pytest

from router.policy import parse_policy
from router.records import Attempt, DecisionRecord, ended

POLICY = parse_policy(
    b"""
tiers:
  small: {type: llama_cpp, price: {input_per_1m: 0.5, output_per_1m: 1.0}}
  large: {type: openai, model: m, price: {input_per_1m: 2.0, output_per_1m: 8.0}}
routes:
  auto: {cascade: [{tier: small, acceptance: {threshold: 0.5}}, {tier: large}]}
""",
    env={},
).policy


def test_costs_counterfactual_and_savings_by_hand() -> None:
    record = DecisionRecord(request_id="r1", endpoint="/v1/chat/completions", policy_version="abc")
    started = time.perf_counter()
    record.attempts = [
        ended(
            "small",
            "llama_cpp",
            "s",
            started,
            prompt_tokens=1000,
            completion_tokens=200,
            outcome="escalated",
        ),
        ended(
            "large",
            "openai",
            "m",
            started,
            prompt_tokens=900,
            completion_tokens=100,
            outcome="accepted",
        ),
    ]
    record.finish(POLICY, "large")
    assert record.attempts[0].cost_usd == pytest.approx((1000 * 0.5 + 200 * 1.0) / 1e6)
    assert record.attempts[1].cost_usd == pytest.approx((900 * 2.0 + 100 * 8.0) / 1e6)
    assert record.cost_usd == pytest.approx(0.0007 + 0.0026)
    # counterfactual: the served answer's tokens on the reference tier
    assert record.counterfactual_cost_usd == pytest.approx(0.0026)
    assert record.saved_usd == pytest.approx(-0.0007)


def test_time_priced_tier_costs_its_latency() -> None:
    policy = parse_policy(
        b"""
tiers:
  gpu: {type: llama_cpp, price: {input_per_1m: 1.0, per_second: 0.002}}
  large: {type: openai, model: m, price: {input_per_1m: 2.0, output_per_1m: 8.0}}
routes:
  auto: {cascade: [{tier: gpu, acceptance: {threshold: 0.5}}, {tier: large}]}
""",
        env={},
    ).policy
    record = DecisionRecord(request_id="r", endpoint="/v1/chat/completions", policy_version="v")
    attempt = ended(
        "gpu", "llama_cpp", "s", time.perf_counter() - 0.25, prompt_tokens=100, completion_tokens=50
    )
    record.attempts = [attempt]
    record.finish(policy, "large")
    seconds = attempt.latency_ms / 1000
    assert seconds >= 0.25
    assert attempt.cost_usd == pytest.approx(100 * 1.0 / 1e6 + seconds * 0.002)
    # the counterfactual prices the same tokens on the reference tier
    assert record.counterfactual_cost_usd == pytest.approx((100 * 2.0 + 50 * 8.0) / 1e6)
    assert record.saved_usd == pytest.approx(record.counterfactual_cost_usd - attempt.cost_usd)


def test_cached_prompt_tokens_at_the_cached_price_and_never_more_than_the_prompt() -> None:
    from router.backends.base import Usage
    from router.backends.spec import PriceSpec
    from router.policy.prices import litellm_price

    price = PriceSpec(input_per_1m=1.0, cached_input_per_1m=0.1, output_per_1m=2.0)
    assert price.cost(1000, 100, cached_tokens=400) == pytest.approx((600 + 40 + 200) / 1e6)
    assert price.cost(10, 0, cached_tokens=99) == pytest.approx(1e-6)  # capped at the prompt
    assert PriceSpec(input_per_1m=1.0).cost(10, 0, cached_tokens=5) == pytest.approx(10e-6)
    entry = {
        "input_cost_per_token": 2.5e-6,
        "output_cost_per_token": 1e-5,
        "cache_read_input_token_cost": 1.25e-6,
    }
    found = litellm_price({"gpt-x": entry}, "openai/gpt-x")
    assert found is not None and found.cached_input_per_1m == pytest.approx(1.25)
    usage = Usage.of(
        {
            "prompt_tokens": 9,
            "completion_tokens": -3,
            "total_tokens": "x",
            "prompt_tokens_details": {"cached_tokens": True},
        }
    )
    assert usage == Usage(prompt_tokens=9)  # hostile counts read as 0, never trusted


def test_a_degraded_answer_claims_no_savings() -> None:
    """Its escalation failed: it was served for want of the reference tier, not instead of it."""
    record = DecisionRecord(request_id="r", endpoint="/v1/chat/completions", policy_version="v")
    record.attempts = [
        Attempt("small", "llama_cpp", "m", "2026-12-05T10:00:00.000Z", 100.0, prompt_tokens=10,
                completion_tokens=5, outcome="degraded"),
        Attempt("large", "openai", "m", "2026-12-05T10:00:00.000Z", 1.0, outcome="error"),
    ]  # fmt: skip
    record.finish(POLICY, "large")
    assert record.saved_usd == 0.0
    assert record.counterfactual_cost_usd == record.cost_usd
