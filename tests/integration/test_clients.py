"""Real clients against a real `cascade serve`: the openai SDK (sync, async, streaming) and
litellm. The local tier answers known questions; the headers say how."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.cascade import Cascade, StartCascade, policy_yaml
from tests.support.surface import litellm_sync_client

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def cascade(start_cascade: StartCascade) -> Cascade:
    # threshold 0: the local answer is always kept, so these tests are about the clients.
    return start_cascade(policy_yaml(threshold=0.0))


@pytest.fixture
def client(cascade: Cascade) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{cascade.url}/v1", api_key="sk-test-not-a-real-key") as c:
        yield c


def test_sync_chat_answers_locally_with_headers(client: openai.OpenAI, cascade: Cascade) -> None:
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=QUESTION)
    completion = raw.parse()
    assert "Paris" in (completion.choices[0].message.content or "")
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert raw.headers["x-cascade-route"] == "auto"
    assert raw.headers["x-cascade-tier"] == "small"
    assert raw.headers["x-cascade-escalations"] == "0"
    assert raw.headers["x-cascade-degraded"] == "false"
    assert len(raw.headers["x-cascade-policy"]) == 12
    record = cascade.record(raw.headers["x-request-id"])
    assert record["final_tier"] == "small"
    assert record["attempts"][0]["outcome"] == "accepted"
    assert 0 < record["attempts"][0]["confidence"]["value"] <= 1
    assert record["key_id"] and "sk-test" not in str(record)


def test_sync_stream_ends_with_usage(client: openai.OpenAI, cascade: Cascade) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    assert raw.headers["x-cascade-tier"] == "small"
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)
    assert cascade.record(raw.headers["x-request-id"])["stream"] is True


async def test_async_chat_and_stream(cascade: Cascade) -> None:
    async with openai.AsyncOpenAI(base_url=f"{cascade.url}/v1", api_key="sk-x") as client:
        completion = await client.chat.completions.create(
            model="small",
            messages=[{"role": "user", "content": "What is 2 + 2?"}],
            max_tokens=24,
            temperature=0,
        )
        assert "4" in (completion.choices[0].message.content or "")
        stream = await client.chat.completions.create(model="auto", messages=QUESTION, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert "Paris" in text


def test_legacy_completions(client: openai.OpenAI) -> None:
    completion = client.completions.create(
        model="small", prompt="One, two, three,", max_tokens=8, stop=["\n"]
    )
    assert completion.choices[0].text.strip()
    assert completion.choices[0].finish_reason in {"stop", "length"}


def test_models_lists_routes_and_tiers(client: openai.OpenAI) -> None:
    ids = {m.id: m.owned_by for m in client.models.list()}
    assert ids == {"auto": "cascade:route", "small": "cascade:tier", "large": "cascade:tier"}


def test_litellm_as_a_client(cascade: Cascade) -> None:
    with litellm_sync_client() as litellm:
        response = litellm.completion(
            model="openai/auto", api_base=f"{cascade.url}/v1", api_key="sk-x", messages=QUESTION
        )
        assert "Paris" in response.choices[0].message.content
        stream = litellm.completion(
            model="openai/auto",
            api_base=f"{cascade.url}/v1",
            api_key="sk-x",
            messages=QUESTION,
            stream=True,
        )
        assert "Paris" in "".join(c.choices[0].delta.content or "" for c in stream)


def test_health_ready_and_metrics(client: openai.OpenAI, cascade: Cascade) -> None:
    import requests

    assert requests.get(f"{cascade.url}/healthz", timeout=10).json() == {"status": "ok"}
    ready = requests.get(f"{cascade.url}/readyz", timeout=10).json()
    assert ready["tiers"] == {"small": "ready", "large": "not configured"}
    client.chat.completions.create(model="auto", messages=QUESTION, max_tokens=4)
    metrics = requests.get(f"{cascade.url}/metrics", timeout=10).text
    assert 'cascade_requests_total{route="auto",status="ok",tier="small"}' in metrics
    assert 'cascade_attempts_total{outcome="accepted",tier="small"}' in metrics
    assert 'cascade_tier_queue_depth{tier="small"} 0.0' in metrics
