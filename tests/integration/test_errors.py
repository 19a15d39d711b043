"""Bad input and failing upstreams: OpenAI-style error bodies, the right status, a record."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest
import requests

from tests.support.cascade import Cascade, StartCascade, policy_yaml
from tests.support.processes import ServerProcess

BODY_LIMIT = 2048


@pytest.fixture(scope="module")
def cascade(start_cascade: StartCascade) -> Cascade:
    return start_cascade(
        policy_yaml(
            threshold=0.0,
            limits={
                "max_body_bytes": BODY_LIMIT,
                "max_output_tokens": 64,
                "default_max_tokens": 16,
            },
        )
    )


def post(
    cascade: Cascade, body: bytes | dict[str, Any], path: str = "/v1/chat/completions"
) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(
        f"{cascade.url}{path}", data=data, timeout=60, headers={"Content-Type": "application/json"}
    )


def assert_error(
    response: requests.Response, status: int, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    assert response.headers["x-request-id"]
    return dict(error)


def chat(content: str = "Hi", **extra: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": content}], **extra}


def test_malformed_json_is_400_and_recorded(cascade: Cascade) -> None:
    response = post(cascade, b'{"model": "auto", "messages": [')
    error = assert_error(response, 400)
    assert "JSON" in error["message"]
    record = cascade.record(response.headers["x-request-id"])
    assert (record["status"], record["http_status"]) == ("invalid", 400)


def test_unknown_model_is_404(cascade: Cascade) -> None:
    assert_error(
        post(cascade, {**chat(), "model": "gpt-17"}), 404, param="model", code="model_not_found"
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(n=0), "n"),
        (chat(tools=[{"type": "function"}]), "tools[0].function"),
        (chat(temperature=2.5), "temperature"),
        (chat(top_p=0), "top_p"),
        (chat(max_tokens=65), "max_tokens"),
        (chat(max_completion_tokens=0), "max_completion_tokens"),
        (chat(stop=["a", "b", "c", "d", "e"]), "stop"),
        (chat(stream_options={"include_usage": True}), "stream_options"),
        ({"model": "auto", "messages": []}, "messages"),
        ({"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ],
)
def test_invalid_requests_are_400(cascade: Cascade, body: dict[str, Any], param: str) -> None:
    assert_error(post(cascade, body), 400, param=param)


@pytest.mark.parametrize(
    ("extra", "feature"),
    [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        (
            {"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "http://x"}}]}]},
            "image",
        ),
    ],
)  # fmt: skip
def test_a_valid_request_no_configured_tier_can_serve_says_why(
    cascade: Cascade, extra: dict[str, Any], feature: str
) -> None:
    """This cascade's large tier is not configured and the local one serves text only."""
    error = assert_error(post(cascade, {**chat(), **extra}), 400, code="unsupported_feature")
    assert error["message"] == (
        f"no tier of route 'auto' serves {feature} (considered: large, small)"
    )


def test_max_tokens_at_the_limit_is_accepted(cascade: Cascade) -> None:
    response = post(cascade, chat("Count from one to a hundred.", max_tokens=64))
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] <= 64


def test_text_parts_are_joined(cascade: Cascade) -> None:
    body = {
        "model": "auto",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is the capital "},
                    {"type": "text", "text": "of France?"},
                ],
            }
        ],
    }
    response = post(cascade, body)
    assert response.status_code == 200
    assert "Paris" in response.json()["choices"][0]["message"]["content"]


def padded(size: int) -> bytes:
    """A valid chat body of exactly `size` bytes (each space in the content is one byte)."""
    empty = len(json.dumps(chat("", max_tokens=1)).encode())
    return json.dumps(chat(" " * (size - empty), max_tokens=1)).encode()


def test_body_limit_boundary(cascade: Cascade) -> None:
    assert post(cascade, padded(BODY_LIMIT)).status_code == 200
    assert_error(post(cascade, padded(BODY_LIMIT + 1)), 413, code="request_too_large")


def test_unknown_path_and_method_are_openai_errors(cascade: Cascade) -> None:
    assert_error(requests.get(f"{cascade.url}/v1/engines", timeout=10), 404)
    assert_error(requests.get(f"{cascade.url}/v1/chat/completions", timeout=10), 405)


def test_client_request_id_is_kept_beside_the_gateways_own(cascade: Cascade) -> None:
    """The ledger's key is the gateway's unpredictable id; a client's id is echoed and kept
    in its own field, so no client can claim, replace or erase another request's record."""
    ids = []
    for _ in range(3):
        response = requests.post(
            f"{cascade.url}/v1/chat/completions",
            json=chat(max_tokens=2),
            headers={"x-request-id": "dup-1"},
            timeout=60,
        )
        assert response.headers["x-request-id"] != "dup-1"
        assert response.headers["x-client-request-id"] == "dup-1"
        ids.append(response.headers["x-request-id"])
    assert len(set(ids)) == 3 and all(len(i) == 26 for i in ids)
    for request_id in ids:  # three paid calls, three records
        assert cascade.record(request_id)["client_request_id"] == "dup-1"
    hostile = requests.post(
        f"{cascade.url}/v1/chat/completions",
        json=chat(max_tokens=2),
        headers={"x-client-request-id": 'a\u00e9"}{'},
        timeout=60,
    )
    assert "x-client-request-id" not in hostile.headers
    assert cascade.record(hostile.headers["x-request-id"])["client_request_id"] is None


def test_prompt_token_limit_boundary(start_cascade: StartCascade, cascade: Cascade) -> None:
    content = "Name three primary colours, please, in a short list."
    measured = post(cascade, chat(content, max_tokens=1)).json()["usage"]["prompt_tokens"]
    limited = start_cascade(policy_yaml(threshold=0.0, limits={"max_prompt_tokens": measured}))
    assert post(limited, chat(content, max_tokens=1)).status_code == 200
    assert_error(
        post(limited, chat(content + " Thanks!", max_tokens=1)), 400, code="context_length_exceeded"
    )


StartFake = Callable[..., ServerProcess]


def test_upstream_500_on_direct_request_is_502(
    start_cascade: StartCascade, start_fake_upstream: StartFake
) -> None:
    fake = start_fake_upstream("--status", "500")
    secret = "sk-upstream-secret-123456"
    cascade = start_cascade(
        policy_yaml(f"{fake.url}/v1", large_key_env="TEST_LARGE_KEY"),
        env={"TEST_LARGE_KEY": secret},
    )
    response = post(cascade, {**chat(), "model": "large"})
    error = assert_error(response, 502)
    assert "injected failure 500" in error["message"]
    record = cascade.record(response.headers["x-request-id"])
    assert record["attempts"][0]["outcome"] == "error"
    # the upstream echoed our key: it reaches neither the client, the record nor the log
    assert "[redacted]" in error["message"]
    for text in (response.text, json.dumps(record), cascade.server.log()):
        assert secret not in text


def test_upstream_400_passes_through(
    start_cascade: StartCascade, start_fake_upstream: StartFake
) -> None:
    fake = start_fake_upstream("--status", "400")
    cascade = start_cascade(policy_yaml(f"{fake.url}/v1"))
    assert_error(post(cascade, {**chat(), "model": "large"}), 400, code="upstream_rejected")


def test_upstream_timeout_is_504_or_degrades(
    start_cascade: StartCascade, start_fake_upstream: StartFake
) -> None:
    fake = start_fake_upstream("--delay-ms", "3000")
    cascade = start_cascade(policy_yaml(f"{fake.url}/v1", threshold=0.999, large_timeout_s=0.5))
    assert_error(post(cascade, {**chat(), "model": "large"}), 504)
    degraded = post(cascade, chat("What is the capital of France?"))
    assert degraded.status_code == 200
    assert degraded.headers["x-cascade-degraded"] == "true"
    record = cascade.record(degraded.headers["x-request-id"])
    assert record["attempts"][1]["outcome"] == "timeout"


def test_upstream_dropping_mid_stream_ends_with_error_event(
    start_cascade: StartCascade, start_fake_upstream: StartFake
) -> None:
    fake = start_fake_upstream("--drop-after", "2")
    cascade = start_cascade(policy_yaml(f"{fake.url}/v1"))
    with openai.OpenAI(base_url=f"{cascade.url}/v1", api_key="sk-x") as client:
        raw = client.chat.completions.with_raw_response.create(
            model="large", stream=True, messages=[{"role": "user", "content": "Hi"}]
        )
        received: list[str | None] = []
        with pytest.raises(openai.APIError):
            received.extend(c.choices[0].delta.content if c.choices else "" for c in raw.parse())
    assert "".join(x or "" for x in received) == "Hello from"
    record = cascade.record(raw.headers["x-request-id"])
    assert record["status"] == "upstream_truncated"
    assert record["attempts"][-1]["outcome"] == "error"
