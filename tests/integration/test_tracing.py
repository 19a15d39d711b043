"""Traces from a real `cascade serve` to a real OTLP/HTTP endpoint (a collector in this test
process): a cascaded request — the bundled model unsure, the upstream answering — gives the
spans of the request, its routing decision, both attempts and the ledger hand-off, in the
client's trace, streamed or not; the upstream receives the request span's traceparent. With
tracing off, the client's trace context goes to the upstream as sent (and a forged one not)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator

import openai
import pytest
import requests

from tests.support.cascade import Cascade, StartCascade, policy_yaml
from tests.support.otlp_collector import Collector, Span
from tests.support.processes import ServerProcess

SERVER, CLIENT, INTERNAL = 2, 3, 1  # OTLP span kinds


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with Collector() as found:
        yield found


@pytest.fixture(scope="module")
def upstream(start_fake_upstream: Callable[..., ServerProcess]) -> ServerProcess:
    return start_fake_upstream()


def _escalating(upstream: ServerProcess) -> str:
    return policy_yaml(f"{upstream.url}/v1", threshold=1.0)  # the small tier never suffices


@pytest.fixture(scope="module")
def traced(start_cascade: StartCascade, upstream: ServerProcess, collector: Collector) -> Cascade:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "cascade-under-test",
    }
    return start_cascade(_escalating(upstream), env=env)


@pytest.fixture(scope="module")
def untraced(start_cascade: StartCascade, upstream: ServerProcess) -> Cascade:
    return start_cascade(_escalating(upstream))


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def _ask(cascade: Cascade, headers: dict[str, str], *, stream: bool) -> dict[str, str]:
    with openai.OpenAI(base_url=f"{cascade.url}/v1", api_key="sk-x", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="auto",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=8,
            stream=stream,
            extra_headers=headers,
        )
        if stream:
            list(raw.parse())
        else:
            raw.parse()
        return dict(raw.headers)


def _upstream_traceparents(upstream: ServerProcess) -> list[str]:
    return list(requests.get(f"{upstream.url}/_fault", timeout=5).json()["traceparents"])


@pytest.mark.parametrize("stream", [False, True])
def test_a_cascaded_request_is_traced_in_the_clients_trace(
    traced: Cascade, collector: Collector, upstream: ServerProcess, stream: bool
) -> None:
    parent, trace_id, client_span = _traceparent()
    headers = _ask(traced, {"traceparent": parent, "tracestate": "vendor=1"}, stream=stream)
    assert headers["x-cascade-escalations"] == "1"
    spans = collector.wait_for(trace_id, 5)
    by_name = {span.name: span for span in spans}
    assert set(by_name) == {
        "POST /v1/chat/completions",
        "cascade.route",
        "cascade.attempt small",
        "cascade.attempt large",
        "cascade.ledger",
    }
    request = by_name["POST /v1/chat/completions"]
    assert (request.kind, request.parent_span_id) == (SERVER, client_span)
    assert request.service == "cascade-under-test"
    attributes = request.attributes
    assert attributes["cascade.request_id"] == headers["x-request-id"]
    assert (attributes["cascade.route"], attributes["cascade.tier"]) == ("auto", "large")
    assert attributes["cascade.escalations"] == 1 and attributes["cascade.stream"] is stream
    assert attributes["http.response.status_code"] == 200
    assert attributes["gen_ai.request.model"] == "auto"
    children = [span for span in spans if span is not request]
    assert all(span.parent_span_id == request.span_id for span in children)
    assert all(request.start_ns <= s.start_ns <= s.end_ns <= request.end_ns for s in children)
    small, large = by_name["cascade.attempt small"], by_name["cascade.attempt large"]
    assert small.kind == INTERNAL and large.kind == CLIENT
    assert small.attributes["cascade.outcome"] == "escalated"
    assert small.attributes["cascade.confidence.threshold"] == 1.0
    assert 0 < small.attributes["cascade.confidence.value"] < 1
    assert small.attributes["gen_ai.usage.output_tokens"] > 0
    assert large.attributes["cascade.outcome"] == "accepted"
    assert large.attributes["gen_ai.usage.input_tokens"] > 0
    assert large.attributes["cascade.cost_usd"] > 0
    assert small.end_ns <= large.start_ns
    # the upstream was called in the same trace, as a child of the request's span
    assert f"00-{trace_id}-{request.span_id}-01" in _upstream_traceparents(upstream)


def test_a_request_without_trace_context_starts_its_own_trace(
    traced: Cascade, collector: Collector
) -> None:
    headers = _ask(traced, {}, stream=False)
    request_id = headers["x-request-id"]

    def ours() -> list[Span]:
        return [s for s in collector.spans if s.attributes.get("cascade.request_id") == request_id]

    found = collector.wait_for(_first_trace(ours), 5)
    assert len(found) == 5 and ours()[0].parent_span_id == ""


def _first_trace(find: Callable[[], list[Span]]) -> str:
    deadline = time.monotonic() + 20
    while not (spans := find()):
        assert time.monotonic() < deadline, "no span of the request arrived"
        time.sleep(0.05)
    return spans[0].trace_id


def test_without_tracing_the_clients_context_goes_to_the_upstream_as_sent(
    untraced: Cascade, upstream: ServerProcess
) -> None:
    parent, _, _ = _traceparent()
    _ask(untraced, {"traceparent": parent}, stream=False)
    assert _upstream_traceparents(upstream)[-1] == parent
    forged = "00-" + "0" * 32 + "-" + "1" * 16 + "-01"  # an all-zero trace id is invalid
    before = len(_upstream_traceparents(upstream))
    _ask(untraced, {"traceparent": forged}, stream=True)
    traceparents = _upstream_traceparents(upstream)
    assert len(traceparents) == before and forged not in traceparents
