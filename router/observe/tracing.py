"""Traces: W3C trace context passed on to remote tiers, and OpenTelemetry spans of each
request exported over OTLP when configured.

Off (the default: no `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
or `OTEL_SDK_DISABLED=true`), nothing of OpenTelemetry is imported and a request costs one
header read: the client's `traceparent` (and `tracestate`), when well formed, go on to the
remote tiers as sent.

On, each generation request gets a SERVER span continuing the client's trace; remote tiers
receive that span's `traceparent`, so their spans join the same trace. When the request ends
its children are written from the decision record — the routing decision, one span per
attempt (tier, model, tokens, outcome, confidence, cost) and the ledger hand-off — with the
times they really took (the cascade itself runs no tracing code). Spans leave in batches off
the request path (the SDK's BatchSpanProcessor; `OTEL_BSP_*` tune it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

from router.observe.trace_context import OUTBOUND, client_context
from router.records import Attempt, DecisionRecord

__all__ = ["OUTBOUND", "OpenTelemetry", "PassThrough", "RequestTrace", "Tracing"]

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class RequestTrace(Protocol):
    @property
    def outbound(self) -> Mapping[str, str]:
        """Headers for the remote tiers this request calls."""
        ...

    def ledger(self) -> Any:
        """A context manager around the record's hand-off to the ledger."""
        ...

    def end(self, record: DecisionRecord, decided_ns: int | None) -> None:
        """The request ended as `record` says; `decided_ns` when its route was known."""
        ...


class Tracing(Protocol):
    def begin(self, headers: Mapping[str, str], name: str) -> RequestTrace: ...

    def shutdown(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Passed:
    """Tracing off: the client's context passed on, nothing recorded."""

    outbound: Mapping[str, str]

    @contextmanager
    def ledger(self) -> Iterator[None]:
        yield

    def end(self, record: DecisionRecord, decided_ns: int | None) -> None:
        return


class PassThrough:
    def begin(self, headers: Mapping[str, str], name: str) -> RequestTrace:
        return _Passed(client_context(headers))

    def shutdown(self) -> None:
        return


def _epoch_ns(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp).timestamp() * 1e9)


def _given(values: Mapping[str, Any]) -> dict[str, Any]:
    """Span attributes: what is known (OpenTelemetry takes no None)."""
    return {key: value for key, value in values.items() if value is not None}


def _attempt_attributes(attempt: Attempt) -> dict[str, Any]:
    confidence = attempt.confidence or {}
    return _given(
        {
            "cascade.tier": attempt.tier,
            "cascade.backend": attempt.backend,
            "cascade.outcome": attempt.outcome,
            "cascade.local": attempt.local,
            "cascade.cost_usd": attempt.cost_usd,
            "cascade.retries": attempt.retries,
            "gen_ai.request.model": attempt.model,
            "gen_ai.usage.input_tokens": attempt.prompt_tokens,
            "gen_ai.usage.output_tokens": attempt.completion_tokens,
            "cascade.ttft_ms": attempt.ttft_ms,
            **{
                f"cascade.confidence.{k}": confidence.get(k)
                for k in ("method", "value", "threshold")
            },
            "error.type": attempt.error[:200] if attempt.error else None,
            "cascade.breaker": attempt.breaker or None,
        }
    )


def _route_attributes(record: DecisionRecord) -> dict[str, Any]:
    classifier = record.classifier or {}
    return _given(
        {
            "cascade.route": record.route,
            "cascade.rule": record.rule,
            "cascade.team": record.team,
            "cascade.classifier.name": str(classifier["name"]) if classifier else None,
            "cascade.classifier.score": cast(float, classifier.get("score")),
            "cascade.classifier.skipped_first_step": (
                bool(classifier["skipped_first_step"]) if classifier else None
            ),
        }
    )


def _record_attributes(record: DecisionRecord) -> dict[str, Any]:
    return _given(
        {
            "cascade.request_id": record.request_id,
            "cascade.team": record.team,
            "cascade.status": record.status,
            "cascade.policy_version": record.policy_version,
            "cascade.cost_usd": record.cost_usd,
            "cascade.saved_usd": record.saved_usd,
            "cascade.escalations": max(len(record.attempts) - 1, 0),
            "cascade.stream": record.stream,
            "http.response.status_code": record.http_status,
            "cascade.route": record.route,
            "cascade.rule": record.rule,
            "cascade.tier": record.final_tier,
            "cascade.cache": record.cache,
            "cascade.client_request_id": record.client_request_id,
            "gen_ai.request.model": record.requested_model,
            "gen_ai.response.model": record.final_model,
        }
    )


@dataclass(slots=True)
class _Spanned:
    """Tracing on: the request's SERVER span, ended (with its children) by `end`."""

    tracer: Any
    span: Any
    outbound: Mapping[str, str]
    started_ns: int
    ledger_ns: tuple[int, int] | None = field(default=None)

    @contextmanager
    def ledger(self) -> Iterator[None]:
        start = time.time_ns()
        try:
            yield
        finally:
            self.ledger_ns = (start, time.time_ns())

    def end(self, record: DecisionRecord, decided_ns: int | None) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        parent = trace.set_span_in_context(self.span)
        if decided_ns is not None:
            route = self.tracer.start_span(
                "cascade.route", context=parent, start_time=self.started_ns
            )
            route.set_attributes(_route_attributes(record))
            route.end(end_time=decided_ns)
        # Attempts run one after another; their start is recorded to the millisecond, so it
        # is kept within the request and after the attempt before.
        earliest = self.started_ns
        for attempt in record.attempts:
            start = max(_epoch_ns(attempt.started_at), earliest)
            earliest = start + int(attempt.latency_ms * 1e6)
            span = self.tracer.start_span(
                f"cascade.attempt {attempt.tier}",
                context=parent,
                kind=SpanKind.INTERNAL if attempt.local else SpanKind.CLIENT,
                start_time=start,
            )
            span.set_attributes(_attempt_attributes(attempt))
            if attempt.outcome in ("error", "timeout", "shed"):
                span.set_status(Status(StatusCode.ERROR, attempt.error or attempt.outcome))
            span.end(end_time=earliest)
        if self.ledger_ns is not None:
            span = self.tracer.start_span(
                "cascade.ledger", context=parent, start_time=self.ledger_ns[0]
            )
            span.end(end_time=self.ledger_ns[1])
        self.span.set_attributes(_record_attributes(record))
        if record.status == "error" or record.http_status >= 500:
            self.span.set_status(Status(StatusCode.ERROR, record.error or record.status))
        self.span.end()


class OpenTelemetry:
    """Spans exported over OTLP/HTTP (endpoint, headers, service name: the standard OTEL_*
    variables), or to a given exporter (tests)."""

    def __init__(self, exporter: Any = None) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        name = os.environ.get("OTEL_SERVICE_NAME") or "cascade"
        # A provider of our own, never the process-wide global: nothing else is changed.
        self._provider = TracerProvider(resource=Resource.create({"service.name": name}))
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("cascade")
        self._propagator = TraceContextTextMapPropagator()

    def begin(self, headers: Mapping[str, str], name: str) -> RequestTrace:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        context = self._propagator.extract(client_context(headers))
        started = time.time_ns()
        span = self._tracer.start_span(
            name, context=context, kind=SpanKind.SERVER, start_time=started
        )
        outbound: dict[str, str] = {}
        self._propagator.inject(outbound, context=trace.set_span_in_context(span))
        return _Spanned(self._tracer, span, outbound, started)

    def shutdown(self) -> None:
        self._provider.shutdown()  # exports what is left


def tracing_from_env(environ: Mapping[str, str] | None = None) -> Tracing:
    """OpenTelemetry when an OTLP endpoint is configured, else pass-through."""
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return PassThrough()
    if any(environ.get(name) for name in _ENDPOINTS):
        return OpenTelemetry()
    return PassThrough()
