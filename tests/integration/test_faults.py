"""Faults of a remote tier, injected into a real upstream process, against a real cascade:
each fault x streamed or not x asked for directly or behind a fallback. The client gets the
fallback's answer while one is healthy, the right error otherwise, and the record says what
happened. Then the breaker opening and recovering, and the tier's Retry-After passed on."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.support.cascade import Cascade, StartCascade
from tests.support.processes import ServerProcess, free_port

StartFake = Callable[..., ServerProcess]


def set_faults(fake: ServerProcess, **faults: Any) -> dict[str, Any]:
    response = requests.post(f"{fake.url}/_fault", json=faults, timeout=10)
    response.raise_for_status()
    return dict(response.json())


def seen(fake: ServerProcess) -> dict[str, Any]:
    return dict(requests.get(f"{fake.url}/_fault", timeout=10).json())


def policy(
    flaky: str,
    spare: str,
    breaker: str = "{consecutive_failures: 1000, min_calls: 1000}",
    retries: str = "{max: 1, backoff_ms: 0}",
) -> str:
    return f"""
tiers:
  flaky:
    type: openai
    api_base: "{flaky}/v1"
    model: fake
    timeout_s: 2
    first_byte_timeout_s: 0.5
    connect_timeout_s: 0.5
    retries: {retries}
    breaker: {breaker}
  spare: {{type: openai, api_base: "{spare}/v1", model: fake}}
routes:
  guarded:
    cascade: [{{tier: flaky}}]
    fallbacks: {{flaky: [spare]}}
"""


@pytest.fixture(scope="module")
def upstreams(start_fake_upstream: StartFake) -> tuple[ServerProcess, ServerProcess]:
    return start_fake_upstream(), start_fake_upstream()


@pytest.fixture(scope="module")
def cascade(start_cascade: StartCascade, upstreams: tuple[ServerProcess, ServerProcess]) -> Cascade:
    flaky, spare = upstreams
    return start_cascade(policy(flaky.url, spare.url))


def ask(cascade: Cascade, model: str, *, stream: bool) -> tuple[int, dict[str, str], str]:
    """(status, headers, the answer's text or the error body) as a client sees them."""
    response = requests.post(
        f"{cascade.url}/v1/chat/completions",
        json={"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]},
        timeout=30,
        stream=stream,
    )
    if response.status_code != 200:
        return response.status_code, dict(response.headers), response.text
    if not stream:
        message = response.json()["choices"][0]["message"]["content"]
        return 200, dict(response.headers), message
    text = ""
    for line in response.iter_lines():
        if line.startswith(b"data: {"):
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return 200, dict(response.headers), f"error event: {chunk['error']['message']}"
            for choice in chunk.get("choices") or ():
                text += choice["delta"].get("content") or ""
    return 200, dict(response.headers), text


# fault -> (direct status not streamed, direct status streamed, flaky attempt outcome)
FAULTS: dict[str, tuple[dict[str, Any], int, int, str]] = {
    "500": ({"status": 500}, 502, 502, "error"),
    "429": ({"status": 429, "retry_after": 7}, 429, 429, "error"),
    "hang": ({"delay_ms": 5000}, 504, 504, "timeout"),
    "slow first byte": ({"first_byte_ms": 3000, "delay_ms": 0}, 200, 504, "timeout"),
    "non-SSE body": ({"html": True}, 502, 502, "error"),
    "cut off before any event": ({"end_after": 0}, 200, 502, "error"),
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_fault_behind_a_fallback_is_answered_by_the_fallback(
    cascade: Cascade, upstreams: tuple[ServerProcess, ServerProcess], fault: str, stream: bool
) -> None:
    flaky, _ = upstreams
    faults, direct_whole, direct_streamed, outcome = FAULTS[fault]
    set_faults(flaky, **faults)
    try:
        status, headers, text = ask(cascade, "guarded", stream=stream)
        record = cascade.record(headers["x-request-id"])
        direct_status, direct_headers, body = ask(cascade, "flaky", stream=stream)
    finally:
        set_faults(flaky)
    expected_direct = direct_streamed if stream else direct_whole
    if expected_direct == 200:  # this fault only touches the other kind of request
        assert (status, text) == (200, "Hello from the fake upstream.")
        return
    assert (status, text) == (200, "Hello from the fake upstream."), body
    assert headers["x-cascade-tier"] == "spare" and headers["x-cascade-escalations"] == "1"
    assert [(a["tier"], a["outcome"]) for a in record["attempts"]] == [
        ("flaky", outcome),
        ("spare", "accepted"),
    ]
    assert record["status"] == "ok" and record["stream"] is stream
    assert direct_status == expected_direct, body
    assert body.startswith('{"error"')
    if fault == "429":
        assert direct_headers["Retry-After"] == "7"
        assert cascade.record(direct_headers["x-request-id"])["status"] == "error"


@pytest.mark.parametrize(
    "fault",
    [{"end_after": 2}, {"drop_after": 2}, {"stall_after": 2}],
    ids=["cut", "reset", "stall"],
)
def test_a_stream_broken_mid_answer_is_continued_on_the_fallback(
    cascade: Cascade, upstreams: tuple[ServerProcess, ServerProcess], fault: dict[str, Any]
) -> None:
    """Two events reached the client, then the stream broke (cut, reset, or silent past its
    idle limit): the fallback answers again (temperature 0), the part already sent is
    skipped, and the client gets one whole answer, exactly."""
    flaky, _ = upstreams
    set_faults(flaky, **fault)
    try:
        started = time.monotonic()
        status, headers, text = ask(cascade, "guarded", stream=True)
        took = time.monotonic() - started
    finally:
        set_faults(flaky)
    assert (status, text) == (200, "Hello from the fake upstream.")
    assert took < 10  # a stall is cut by the idle limit (here the tier's 2 s timeout)
    record = cascade.record(headers["x-request-id"])
    assert record["status"] == "ok" and record["final_tier"] == "spare"
    broken, repair = record["attempts"]
    assert (broken["tier"], broken["outcome"], broken["usage_source"]) == (
        "flaky",
        "timeout" if "stall_after" in fault else "error",
        "estimated",
    )
    assert (repair["tier"], repair["outcome"]) == ("spare", "accepted")
    assert repair["repair"] == {"method": "regenerate", "after_chars": 10, "of": "flaky"}


def test_a_broken_stream_with_no_fallback_ends_in_an_error_event(
    cascade: Cascade, upstreams: tuple[ServerProcess, ServerProcess]
) -> None:
    flaky, _ = upstreams
    set_faults(flaky, end_after=2)
    try:
        status, headers, text = ask(cascade, "flaky", stream=True)
    finally:
        set_faults(flaky)
    assert status == 200 and text.startswith("error event: ")  # never finish_reason: stop
    record = cascade.record(headers["x-request-id"])
    assert record["status"] == "upstream_truncated"
    assert [(a["tier"], a["outcome"]) for a in record["attempts"]] == [("flaky", "error")]


def test_a_stream_that_finished_with_usage_but_no_done_is_a_whole_answer(
    cascade: Cascade, upstreams: tuple[ServerProcess, ServerProcess]
) -> None:
    """Its finish_reason and usage came; only `[DONE]` is missing: the client gets the whole
    answer and no error event, and the record prices it from the usage."""
    flaky, _ = upstreams
    set_faults(flaky, no_done=True)
    try:
        status, headers, text = ask(cascade, "flaky", stream=True)
    finally:
        set_faults(flaky)
    assert (status, text) == (200, "Hello from the fake upstream.")
    record = cascade.record(headers["x-request-id"])
    assert record["status"] == "ok"
    (attempt,) = record["attempts"]
    assert (attempt["outcome"], attempt["usage_source"]) == ("accepted", "reported")
    assert (attempt["prompt_tokens"], attempt["completion_tokens"]) == (10, 6)


def test_a_tier_that_is_down_is_retried_then_skipped(
    start_cascade: StartCascade, start_fake_upstream: StartFake
) -> None:
    spare = start_fake_upstream()
    nowhere = f"http://127.0.0.1:{free_port()}"
    cascade = start_cascade(policy(nowhere, spare.url))
    status, headers, _ = ask(cascade, "guarded", stream=False)
    assert (status, headers["x-cascade-tier"]) == (200, "spare")
    flaky, _ = cascade.record(headers["x-request-id"])["attempts"]
    assert (flaky["outcome"], flaky["retries"]) == ("error", 1)
    assert "unreachable" in flaky["error"]
    assert ask(cascade, "flaky", stream=True)[0] == 503


def test_the_breaker_opens_spares_the_upstream_and_recovers(
    start_cascade: StartCascade, start_fake_upstream: StartFake
) -> None:
    flaky, spare = start_fake_upstream("--status", "500"), start_fake_upstream()
    breaker = "{consecutive_failures: 3, cooldown_s: 1, half_open_probes: 1}"
    cascade = start_cascade(policy(flaky.url, spare.url, breaker))
    for _ in range(10):
        status, headers, _ = ask(cascade, "guarded", stream=False)
        assert (status, headers["x-cascade-tier"]) == (200, "spare")
    assert seen(flaky)["requests"] == 6  # three calls, each retried once; then it opened
    record = cascade.record(headers["x-request-id"])
    assert "circuit breaker is open" in record["attempts"][0]["error"]
    assert record["attempts"][0]["breaker"] == "open"
    ready = requests.get(f"{cascade.url}/readyz", timeout=10).json()
    assert ready["tiers"]["flaky"] == "breaker open"
    metrics = requests.get(f"{cascade.url}/metrics", timeout=10).text
    assert 'cascade_tier_state{state="open",tier="flaky"} 1.0' in metrics
    set_faults(flaky)  # healthy again
    time.sleep(1.1)  # the cooldown
    status, headers, _ = ask(cascade, "guarded", stream=True)
    assert (status, headers["x-cascade-tier"]) == (200, "flaky")  # the probe, and it closed
    assert seen(flaky)["requests"] == 7  # the probe: one call, never retried
    assert requests.get(f"{cascade.url}/readyz", timeout=10).json()["tiers"]["flaky"] == "ready"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(
    "faults",
    [{"status": 500, "status_times": 1}, {"status": 429, "retry_after": 1, "status_times": 1}],
    ids=["500 once", "429 with a short Retry-After"],
)
def test_a_passing_failure_is_retried_on_the_same_tier(
    start_cascade: StartCascade,
    upstreams: tuple[ServerProcess, ServerProcess],
    faults: dict[str, Any],
    stream: bool,
) -> None:
    """(Its own server: the module's other faults spend the shared tier's retry budget.)"""
    flaky, spare = upstreams
    cascade = start_cascade(
        policy(flaky.url, spare.url, retries="{max: 1, backoff_ms: 0, budget: 1.0}")
    )
    spare_before = seen(spare)["requests"]
    set_faults(flaky, **faults)
    try:
        started = time.monotonic()
        status, headers, text = ask(cascade, "guarded", stream=stream)
        took = time.monotonic() - started
    finally:
        set_faults(flaky)
    assert (status, text) == (200, "Hello from the fake upstream.")
    (attempt,) = cascade.record(headers["x-request-id"])["attempts"]
    assert (attempt["tier"], attempt["outcome"], attempt["retries"]) == ("flaky", "accepted", 1)
    assert seen(spare)["requests"] == spare_before
    if "retry_after" in faults:
        assert took >= 1.0  # the advised second was waited out


def test_one_malformed_event_among_whole_ones_is_skipped(
    cascade: Cascade, upstreams: tuple[ServerProcess, ServerProcess]
) -> None:
    flaky, _ = upstreams
    set_faults(flaky, malformed_at=2)
    try:
        status, headers, text = ask(cascade, "guarded", stream=True)
    finally:
        set_faults(flaky)
    assert (status, text) == (200, "Hello from the fake upstream.")
    (attempt,) = cascade.record(headers["x-request-id"])["attempts"]
    assert (attempt["tier"], attempt["outcome"]) == ("flaky", "accepted")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_content_policy_refusal_is_the_clients_answer_not_routed_around(
    cascade: Cascade, upstreams: tuple[ServerProcess, ServerProcess], stream: bool
) -> None:
    flaky, spare = upstreams
    spare_before = seen(spare)["requests"]
    set_faults(flaky, content_filter=True)
    try:
        status, headers, body = ask(cascade, "guarded", stream=stream)
    finally:
        set_faults(flaky)
    assert status == 400
    error = json.loads(body)["error"]
    assert error["code"] == "content_filter" and "content management policy" in error["message"]
    assert seen(spare)["requests"] == spare_before  # the fallback was not asked
    record = cascade.record(headers["x-request-id"])
    assert [(a["tier"], a["outcome"]) for a in record["attempts"]] == [("flaky", "error")]
