"""Escalation to a real second server (llama-cpp-python's OpenAI server as tier `large`)
and degradation when the large tier is down."""

from __future__ import annotations

import openai
import pytest

from tests.support.cascade import StartCascade, policy_yaml
from tests.support.processes import ServerProcess, free_port

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_low_confidence_escalates_to_large(
    start_cascade: StartCascade, llama_server: ServerProcess
) -> None:
    # A threshold no answer reaches: the local answer is scored, rejected, and escalated.
    cascade = start_cascade(policy_yaml(f"{llama_server.url}/v1", threshold=0.999))
    with openai.OpenAI(base_url=f"{cascade.url}/v1", api_key="sk-x") as client:
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=QUESTION, max_tokens=32, temperature=0
        )
    assert raw.headers["x-cascade-tier"] == "large"
    assert raw.headers["x-cascade-escalations"] == "1"
    assert raw.headers["x-cascade-degraded"] == "false"
    assert "Paris" in (raw.parse().choices[0].message.content or "")

    record = cascade.record(raw.headers["x-request-id"])
    small, large = record["attempts"]
    assert (small["tier"], small["outcome"]) == ("small", "escalated")
    assert small["confidence"]["threshold"] == 0.999
    assert small["confidence"]["value"] < 0.999
    assert small["completion_tokens"] > 0
    assert (large["tier"], large["outcome"], large["backend"]) == ("large", "accepted", "openai")
    assert large["prompt_tokens"] > 0 and large["completion_tokens"] > 0
    assert record["final_tier"] == "large" and record["status"] == "ok"
    # prices from the policy: small 0.01/0.02, large 1.0/3.0 per 1M tokens
    expected = (
        small["prompt_tokens"] * 0.01
        + small["completion_tokens"] * 0.02
        + large["prompt_tokens"] * 1.0
        + large["completion_tokens"] * 3.0
    ) / 1e6
    assert abs(record["cost_usd"] - expected) < 1e-9


def test_escalated_stream_is_live_from_large(
    start_cascade: StartCascade, llama_server: ServerProcess
) -> None:
    cascade = start_cascade(policy_yaml(f"{llama_server.url}/v1", threshold=0.999))
    with openai.OpenAI(base_url=f"{cascade.url}/v1", api_key="sk-x") as client:
        raw = client.chat.completions.with_raw_response.create(
            model="auto",
            messages=QUESTION,
            max_tokens=32,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(raw.parse())
    assert raw.headers["x-cascade-tier"] == "large"
    # the same headers as the non-streamed escalation above (a stream once said 0 here)
    assert raw.headers["x-cascade-escalations"] == "1"
    assert raw.headers["x-cascade-degraded"] == "false"
    assert raw.headers["x-cascade-model"] == "smollm2-remote"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    record = cascade.record(raw.headers["x-request-id"])
    assert [a["outcome"] for a in record["attempts"]] == ["escalated", "accepted"]
    assert record["attempts"][1]["ttft_ms"] is not None


def test_direct_tier_request_passes_through(
    start_cascade: StartCascade, llama_server: ServerProcess
) -> None:
    cascade = start_cascade(policy_yaml(f"{llama_server.url}/v1"))
    with openai.OpenAI(base_url=f"{cascade.url}/v1", api_key="sk-x") as client:
        raw = client.chat.completions.with_raw_response.create(
            model="large", messages=QUESTION, max_tokens=32, temperature=0
        )
    assert raw.headers["x-cascade-tier"] == "large"
    assert raw.headers["x-cascade-escalations"] == "0"
    assert "Paris" in (raw.parse().choices[0].message.content or "")
    record = cascade.record(raw.headers["x-request-id"])
    assert record["requested_model"] == "large"
    assert [a["tier"] for a in record["attempts"]] == ["large"]


def test_large_tier_down_serves_degraded_local_answer(start_cascade: StartCascade) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    cascade = start_cascade(policy_yaml(dead, threshold=0.999))
    with openai.OpenAI(base_url=f"{cascade.url}/v1", api_key="sk-x") as client:
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=QUESTION)
        assert "Paris" in (raw.parse().choices[0].message.content or "")
        assert raw.headers["x-cascade-tier"] == "small"
        assert raw.headers["x-cascade-degraded"] == "true"
        assert raw.headers["x-cascade-escalations"] == "1"
        record = cascade.record(raw.headers["x-request-id"])
        assert record["status"] == "degraded"
        assert [a["outcome"] for a in record["attempts"]] == ["degraded", "error"]
        assert "unreachable" in record["attempts"][1]["error"]

        streamed = client.chat.completions.with_raw_response.create(
            model="auto", messages=QUESTION, stream=True
        )
        assert streamed.headers["x-cascade-degraded"] == "true"
        assert "Paris" in "".join(
            c.choices[0].delta.content or "" for c in streamed.parse() if c.choices
        )


def test_unconfigured_large_tier_degrades_visibly(start_cascade: StartCascade) -> None:
    cascade = start_cascade(policy_yaml("", threshold=0.999))
    with openai.OpenAI(base_url=f"{cascade.url}/v1", api_key="sk-x") as client:
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=QUESTION)
        assert raw.headers["x-cascade-degraded"] == "true"
        record = cascade.record(raw.headers["x-request-id"])
        assert record["attempts"][1]["error"] == "tier 'large' is not configured"
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(model="large", messages=QUESTION)
        assert failed.value.status_code == 503
        assert "not configured" in failed.value.message


def test_litellm_tier_escalation(start_cascade: StartCascade, llama_server: ServerProcess) -> None:
    """A `type: litellm` tier (litellm's openai provider pointed at the llama.cpp server)."""
    policy = (
        policy_yaml(f"{llama_server.url}/v1", threshold=0.999)
        .replace("type: openai", "type: litellm")
        .replace("model: smollm2-remote", "model: openai/smollm2-remote")
    )
    cascade = start_cascade(policy, env={"NO_KEY_SET": "sk-none"})
    with openai.OpenAI(base_url=f"{cascade.url}/v1", api_key="sk-x") as client:
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=QUESTION, max_tokens=32, temperature=0
        )
        assert raw.headers["x-cascade-tier"] == "large"
        assert "Paris" in (raw.parse().choices[0].message.content or "")
        streamed = client.chat.completions.with_raw_response.create(
            model="large", messages=QUESTION, max_tokens=32, temperature=0, stream=True
        )
        assert "Paris" in "".join(
            c.choices[0].delta.content or "" for c in streamed.parse() if c.choices
        )
    record = cascade.record(raw.headers["x-request-id"])
    large = record["attempts"][1]
    assert (large["backend"], large["outcome"]) == ("litellm", "accepted")
    assert large["prompt_tokens"] > 0 and large["completion_tokens"] > 0
