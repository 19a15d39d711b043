"""Trace context from clients, and whether tracing is on."""

from __future__ import annotations

import subprocess
import sys

import pytest

from router.trace_context import client_context
from router.tracing import OpenTelemetry, PassThrough, tracing_from_env

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


def test_tracing_off_imports_nothing_of_the_opentelemetry_sdk() -> None:
    code = (
        "import sys; from router.app import create_app; from router.settings import Settings; "
        "create_app(Settings()); "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))"
    )
    env = {"PATH": "/usr/bin:/bin"}
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True, env=env, timeout=60
    )
    assert found.stdout.strip() == b"[]"
