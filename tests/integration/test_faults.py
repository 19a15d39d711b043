"""Faults of a remote tier, injected into a real upstream process, against a real cascade:
each fault x streamed or not x asked for directly or behind a fallback. The client gets the
fallback's answer while one is healthy, the right error otherwise, and the record says what
happened. Then the breaker opening and recovering, and the tier's Retry-After passed on."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.support.cascade import Cascade, StartCascade
from tests.support.faults import ANSWER, ERROR_EVENT, fault_matrix
from tests.support.faults import ask as ask_at
from tests.support.faults import seen as seen_at
from tests.support.faults import set_faults as faults_at
from tests.support.processes import ServerProcess, free_port

StartFake = Callable[..., ServerProcess]


def set_faults(fake: ServerProcess, **faults: Any) -> dict[str, Any]:
    return faults_at(fake.url, **faults)


def seen(fake: ServerProcess) -> dict[str, Any]:
    return seen_at(fake.url)


def policy(
    flaky: str,
    spare: str,
    breaker: str = "{consecutive_failures: 1000, min_calls: 1000}",
    retries: str = "{max: 1, backoff_ms: 0}",
    continuation: str = "regenerate",
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
    price: {{input_per_1m: 1.0, output_per_1m: 2.0}}
  spare:
    type: openai
    api_base: "{spare}/v1"
    model: spare-model
    continuation: {continuation}
    price: {{input_per_1m: 1.0, output_per_1m: 2.0}}
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
    return ask_at(cascade.url, model, stream=stream, timeout=30)


FAULTS = fault_matrix(late_ms=3000)
LIMIT_S = 10  # the test policy's limits: 0.5 s to the first byte, 2 s in all


def _asked_under(
    cascade: Cascade, flaky: ServerProcess, fault: str, model: str, *, stream: bool
) -> tuple[int, dict[str, str], str, dict[str, Any]]:
    """(status, headers, text, record) of one request while `flaky` has the fault, which
    must not take longer than the test policy's limits allow."""
    set_faults(flaky, **FAULTS[fault].faults)
    try:
        started = time.monotonic()
        status, headers, text = ask(cascade, model, stream=stream)
        took = time.monotonic() - started
    finally:
        set_faults(flaky)
    assert took < LIMIT_S
    return status, headers, text, cascade.record(headers["x-request-id"])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_behind_a_healthy_fallback_every_fault_ends_in_the_whole_answer(
    cascade: Cascade, upstreams: tuple[ServerProcess, ServerProcess], fault: str, stream: bool
) -> None:
    case = FAULTS[fault]
    status, headers, text, record = _asked_under(
        cascade, upstreams[0], fault, "guarded", stream=stream
    )
    if fault == "content-policy 400":  # the client's answer, never routed around
        assert (status, json.loads(text)["error"]["code"]) == (400, "content_filter")
        assert [(a["tier"], a["outcome"]) for a in record["attempts"]] == [("flaky", "error")]
        return
    assert (status, text) == (200, ANSWER)
    assert record["status"] == "ok" and record["stream"] is stream
    attempts = [(a["tier"], a["outcome"]) for a in record["attempts"]]
    untouched = (not stream and case.alone_whole == ANSWER) or case.primary == "accepted"
    if untouched:  # this fault only touches the other kind of request, or is no failure
        assert attempts == [("flaky", "accepted")]
        return
    assert attempts == [("flaky", case.primary), ("spare", "accepted")]
    assert record["final_tier"] == "spare" and record["final_model"] == "spare-model"
    primary, spare = record["attempts"]
    assert spare["cost_usd"] > 0 and spare["usage_source"] == "reported"
    if stream and case.alone_streamed == ERROR_EVENT:
        return  # repaired: the headers went out with the primary's first text (below)
    # which model is reported: the spare's; what is billed: only the spare's answer
    assert headers["x-cascade-tier"] == "spare" and headers["x-cascade-model"] == "spare-model"
    # the primary failed: a fallback, not an escalation (no answer of its was rejected)
    failed = int(case.primary in ("error", "timeout", "shed"))
    assert (headers["x-cascade-escalations"], headers["x-cascade-fallbacks"]) == (
        str(1 - failed),
        str(failed),
    )
    assert primary["cost_usd"] == 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_with_no_fallback_every_fault_ends_in_its_error_within_the_limits(
    cascade: Cascade, upstreams: tuple[ServerProcess, ServerProcess], fault: str, stream: bool
) -> None:
    case = FAULTS[fault]
    status, headers, body, record = _asked_under(
        cascade, upstreams[0], fault, "flaky", stream=stream
    )
    expected = case.alone_streamed if stream else case.alone_whole
    if expected == ANSWER:
        assert (status, body) == (200, ANSWER) and record["status"] == "ok"
    elif expected == ERROR_EVENT:  # text went out; never a finish_reason: stop after it
        assert status == 200 and body.startswith("error event: ")
        assert record["status"] == "upstream_truncated"
    else:
        assert status == expected, body
        assert body.startswith('{"error"')
        assert record["status"] == ("invalid" if status == 400 else "error")
        if fault == "429 with a long Retry-After":
            assert headers["Retry-After"] == "7"  # the provider's advice, passed on
        if fault == "context_length_exceeded":
            assert json.loads(body)["error"]["code"] == "context_length_exceeded"


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
    skipped, and the client gets one whole answer, exactly; both attempts are billed."""
    flaky, _ = upstreams
    set_faults(flaky, **fault)
    try:
        status, headers, text = ask(cascade, "guarded", stream=True)
    finally:
        set_faults(flaky)
    assert (status, text) == (200, ANSWER)
    record = cascade.record(headers["x-request-id"])
    assert record["status"] == "ok" and record["final_tier"] == "spare"
    broken, repair = record["attempts"]
    assert (broken["tier"], broken["outcome"], broken["usage_source"]) == (
        "flaky",
        "timeout" if "stall_after" in fault else "error",
        "estimated",
    )
    assert broken["completion_tokens"] == 2 and broken["cost_usd"] > 0  # what it sent
    assert (repair["tier"], repair["outcome"]) == ("spare", "accepted")
    assert repair["repair"] == {"method": "regenerate", "after_chars": 10, "of": "flaky"}


@pytest.mark.parametrize("refuses", [False, True], ids=["prefill", "prefill refused"])
def test_a_prefill_fallback_continues_the_message_or_regenerates_when_it_refuses(
    start_cascade: StartCascade, upstreams: tuple[ServerProcess, ServerProcess], refuses: bool
) -> None:
    flaky, spare = upstreams
    cascade = start_cascade(policy(flaky.url, spare.url, continuation="prefill"))
    set_faults(flaky, end_after=2)
    set_faults(spare, refuse_prefill=refuses)
    try:
        status, headers, text = ask(cascade, "guarded", stream=True)
    finally:
        set_faults(flaky)
        set_faults(spare)
    assert (status, text) == (200, ANSWER)
    attempts = cascade.record(headers["x-request-id"])["attempts"]
    methods = [(a["tier"], a["outcome"], (a.get("repair") or {}).get("method")) for a in attempts]
    if refuses:
        assert methods == [
            ("flaky", "error", None),
            ("spare", "error", "prefill"),
            ("spare", "accepted", "regenerate"),
        ]
        assert "prefill" in attempts[1]["repair"]["error"]
    else:
        assert methods == [("flaky", "error", None), ("spare", "accepted", "prefill")]
        asked = seen(spare)["bodies"][-1]["messages"][-1]
        assert asked == {"role": "assistant", "content": "Hello from"}


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


def test_a_primary_down_for_a_while_is_served_by_the_fallback_then_reprobed(
    start_cascade: StartCascade, start_fake_upstream: StartFake
) -> None:
    """The primary answers 503 for 6 s, then is healthy: every request in between gets the
    whole answer from the fallback, the primary is spared (the breaker opens and probes once
    per cool-down, probes never retried), and it serves again once healthy. (A minute's
    outage is bench/failover.py's.)"""
    flaky, spare = start_fake_upstream(), start_fake_upstream()
    breaker = "{consecutive_failures: 3, cooldown_s: 1, half_open_probes: 1}"
    cascade = start_cascade(policy(flaky.url, spare.url, breaker))
    set_faults(flaky, status=503)
    outage_s, served = 6.0, []
    started = time.monotonic()
    while time.monotonic() - started < outage_s:
        status, headers, text = ask(cascade, "guarded", stream=len(served) % 2 == 1)
        served.append((status, text, headers["x-cascade-tier"]))
        time.sleep(0.2)
    hits_while_down = seen(flaky)["requests"]
    set_faults(flaky)  # healthy again
    time.sleep(1.1)  # one cool-down: the next request is the probe
    after = [ask(cascade, "guarded", stream=False) for _ in range(3)]
    assert len(served) >= 20
    assert all((status, text) == (200, ANSWER) for status, text, _ in served)
    assert {tier for _, _, tier in served} == {"spare"}
    # three calls retried once each until the breaker opened, then one probe per cool-down
    assert hits_while_down <= 3 * 2 + outage_s / 1.0 + 1
    assert [(status, headers["x-cascade-tier"]) for status, headers, _ in after] == [
        (200, "flaky")
    ] * 3


def test_with_the_retry_budget_spent_a_failing_tier_is_not_hammered(
    start_cascade: StartCascade, start_fake_upstream: StartFake
) -> None:
    """60 concurrent requests against a primary that always fails, with no breaker to stop
    them and a retry budget of 10%: at most 10% more calls than requests reach it, each
    request ends in the fallback's answer in bounded time, and the gateway is healthy after."""
    flaky, spare = start_fake_upstream("--status", "500"), start_fake_upstream()
    retries = "{max: 3, backoff_ms: 10, budget: 0.1, min_budget: 0}"
    cascade = start_cascade(policy(flaky.url, spare.url, retries=retries))
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=30) as pool:
        results = list(pool.map(lambda _: ask(cascade, "guarded", stream=False), range(60)))
    took = time.monotonic() - started
    assert all((status, text) == (200, ANSWER) for status, _, text in results)
    calls = seen(flaky)["requests"]
    assert 60 <= calls <= 60 * 1.1 + 1, calls  # the budget, not max: 3 (which would be 240)
    assert took < 30
    assert requests.get(f"{cascade.url}/healthz", timeout=5).status_code == 200
    set_faults(flaky)
    assert ask(cascade, "guarded", stream=True)[1]["x-cascade-tier"] == "flaky"
