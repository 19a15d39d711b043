"""Trace context from clients, and whether tracing is on."""

from __future__ import annotations

import pytest

from router.observe.trace_context import client_context
from router.observe.tracing import OpenTelemetry, PassThrough, tracing_from_env

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"traceparent": GOOD}, {"traceparent": GOOD}),
        ({"traceparent": GOOD.upper()}, {"traceparent": GOOD}),
        (
            {"traceparent": GOOD, "tracestate": "a=1,b=2"},
            {"traceparent": GOOD, "tracestate": "a=1,b=2"},
        ),
        ({"traceparent": GOOD, "tracestate": "x" * 513}, {"traceparent": GOOD}),
        ({"traceparent": GOOD, "tracestate": "a=1\n"}, {"traceparent": GOOD}),
        ({"traceparent": "ff" + GOOD[2:]}, {}),  # version ff is invalid
        ({"traceparent": GOOD.replace("4bf92f3577b34da6a3ce929d0e0e4736", "0" * 32)}, {}),
        ({"traceparent": GOOD.replace("00f067aa0ba902b7", "0" * 16)}, {}),
        ({"traceparent": GOOD + "-extra"}, {}),
        ({"traceparent": "00-xyz"}, {}),
        ({"tracestate": "a=1"}, {}),  # state without a parent is not passed on
        ({}, {}),
    ],
)
def test_only_well_formed_trace_context_is_taken(
    headers: dict[str, str], expected: dict[str, str]
) -> None:
    assert client_context(headers) == expected


def test_tracing_is_on_only_with_an_otlp_endpoint() -> None:
    assert isinstance(tracing_from_env({}), PassThrough)
    on = tracing_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert isinstance(on, OpenTelemetry)
    on.shutdown()
    off = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:9", "OTEL_SDK_DISABLED": "TRUE"}
    assert isinstance(tracing_from_env(off), PassThrough)
