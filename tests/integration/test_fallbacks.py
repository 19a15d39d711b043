"""Fallbacks on error, the `live` stream mode, and prices from litellm's model_cost map."""

from __future__ import annotations

from collections.abc import Callable

import openai
import requests

from tests.support.cascade import StartCascade
from tests.support.processes import ServerProcess

StartFake = Callable[..., ServerProcess]
HI = [{"role": "user", "content": "Hi"}]


def test_a_failing_tier_falls_back(
    start_cascade: StartCascade, start_fake_upstream: StartFake
) -> None:
    broken, working = start_fake_upstream("--status", "503"), start_fake_upstream()
    cascade = start_cascade(f"""
tiers:
  large: {{type: openai, api_base: "{broken.url}/v1", model: fake}}
  backup: {{type: openai, api_base: "{working.url}/v1", model: fake,
           price: {{input_per_1m: 1.0, output_per_1m: 2.0}}}}
routes:
  auto: {{cascade: [{{tier: large}}], fallbacks: {{large: [backup]}}}}
""")
    response = requests.post(
        f"{cascade.url}/v1/chat/completions", timeout=30, json={"model": "auto", "messages": HI}
    )
    assert response.status_code == 200
    assert response.headers["x-cascade-tier"] == "backup"
    # large failed: a fallback, not an escalation (no answer of its was rejected)
    assert response.headers["x-cascade-escalations"] == "0"
    assert response.headers["x-cascade-fallbacks"] == "1"
    record = cascade.record(response.headers["x-request-id"])
    assert [(a["tier"], a["outcome"]) for a in record["attempts"]] == [
        ("large", "error"),
        ("backup", "accepted"),
    ]
    # the fake upstream reports 10 prompt and 6 completion tokens
    assert record["cost_usd"] == (10 * 1.0 + 6 * 2.0) / 1e6


def test_live_stream_mode_keeps_the_first_step(start_cascade: StartCascade) -> None:
    cascade = start_cascade("""
tiers:
  small: {type: llama_cpp}
  large: {type: openai, model: unconfigured}
routes:
  auto:
    stream: live
    cascade:
      - {tier: small, acceptance: {threshold: 0.999}}
      - {tier: large}
""")
    question = [{"role": "user", "content": "What is the capital of France?"}]
    with openai.OpenAI(base_url=f"{cascade.url}/v1", api_key="sk-x") as client:
        streamed = client.chat.completions.with_raw_response.create(
            model="auto", messages=question, stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
        assert "Paris" in text
        assert streamed.headers["x-cascade-tier"] == "small"
        assert streamed.headers["x-cascade-degraded"] == "false"
        # not streamed: the threshold applies, the escalation finds no large tier
        plain = client.chat.completions.with_raw_response.create(model="auto", messages=question)
        assert plain.headers["x-cascade-degraded"] == "true"
    record = cascade.record(streamed.headers["x-request-id"])
    assert [(a["tier"], a["outcome"]) for a in record["attempts"]] == [("small", "accepted")]


def test_costs_from_litellm_model_cost(
    start_cascade: StartCascade, start_fake_upstream: StartFake
) -> None:
    fake = start_fake_upstream()
    cascade = start_cascade(f"""
tiers:
  large: {{type: openai, api_base: "{fake.url}/v1", model: gpt-4o-mini,
          price_from_litellm: true}}
routes:
  auto: {{cascade: [{{tier: large}}]}}
""")
    response = requests.post(
        f"{cascade.url}/v1/chat/completions", timeout=30, json={"model": "auto", "messages": HI}
    )
    record = cascade.record(response.headers["x-request-id"])
    # gpt-4o-mini in litellm's map: $0.15 / $0.60 per 1M tokens, $0.075 for cached prompt
    # tokens; 10 prompt (4 of them cached, as the fake's usage details say), 6 completion
    assert abs(record["cost_usd"] - (6 * 0.15 + 4 * 0.075 + 6 * 0.60) / 1e6) < 1e-12
    assert abs(record["attempts"][0]["cost_usd"] - record["cost_usd"]) < 1e-12
