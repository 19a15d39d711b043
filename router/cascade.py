"""The cascade executor: try a route's tiers in order, keep the first confident answer.

Streaming contract (docs/streaming.md): an answer that may still be rejected is never
streamed. A step with an acceptance rule is generated in full, scored, and only then
streamed to the client if accepted; the final step (which is always kept) streams live.
So a client never receives a token that is later retracted.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from router.backends.base import Backend, BackendError, Completion, StreamEvent
from router.confidence import Confidence, score
from router.errors import APIError, overloaded, upstream_failed
from router.policy.model import AcceptanceSpec, ClassifierSpec, Policy
from router.records import DecisionRecord
from router.requests import ClientRequest

if TYPE_CHECKING:
    from classifiers import Acceptance, Router


@dataclass(frozen=True, slots=True)
class Step:
    tier: str
    acceptance: AcceptanceSpec | None


@dataclass(frozen=True, slots=True)
class Plan:
    """What a requested model resolves to: a route's steps, or one tier passed through."""

    route: str | None
    steps: tuple[Step, ...]
    reference_tier: str
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    stream: Literal["verify", "live"] = "verify"
    classifier: ClassifierSpec | None = None

    @property
    def label(self) -> str:
        return self.route or self.steps[0].tier

    def candidates(self, tier: str) -> list[str]:
        """`tier`, then its fallbacks depth-first, each tier once (policies have no cycles)."""
        order: list[str] = []

        def visit(name: str) -> None:
            if name not in order:
                order.append(name)
                for fallback in self.fallbacks.get(name, ()):
                    visit(fallback)

        visit(tier)
        return order


def resolve(policy: Policy, model: str) -> Plan | None:
    if (route := policy.routes.get(model)) is not None:
        steps = tuple(Step(s.tier, s.acceptance) for s in route.cascade)
        fallbacks = {tier: tuple(targets) for tier, targets in route.fallbacks.items()}
        return Plan(model, steps, route.reference, fallbacks, route.stream, route.classifier)
    if model in policy.tiers:
        return Plan(None, (Step(model, None),), model)
    return None


@dataclass(slots=True)
class Answer:
    """The served answer and how it was reached."""

    tier: str
    model: str
    escalations: int
    degraded: bool
    completion: Completion | None = None  # non-streamed, or streamed from a buffer
    events: AsyncGenerator[StreamEvent, None] | None = None  # streamed live


def _failure(errors: list[BackendError], passthrough: bool) -> APIError:
    if errors and all(e.kind == "shed" for e in errors):
        return overloaded("every tier of this route is saturated; retry shortly")
    last = errors[-1]
    if passthrough and last.status is not None and 400 <= last.status < 500:
        return APIError(last.status, last.message, code="upstream_rejected")
    if last.kind == "timeout":
        return upstream_failed(last.message, 504)
    return upstream_failed(last.message, 503 if last.kind == "unavailable" else 502)


@dataclass(frozen=True, slots=True)
class Prerouting:
    """A route classifier's verdict on one prompt."""

    name: str
    version: str
    score: float
    threshold: float

    @property
    def skip(self) -> bool:
        """Below the threshold the route's first step is skipped."""
        return self.score < self.threshold

    def as_record(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "score": round(self.score, 6),
            "threshold": self.threshold,
            "skipped_first_step": self.skip,
        }


def preroute(plan: Plan, routers: Mapping[str, Router], question: str) -> Prerouting | None:
    """Score the prompt with the plan's route classifier (None when it has none)."""
    if plan.classifier is None:
        return None
    router = routers[plan.classifier.model]
    return Prerouting(
        router.name, router.version, router.score(question), plan.classifier.threshold
    )


class Cascade:
    """Runs plans against the backends (and classifiers) of one policy."""

    def __init__(
        self,
        policy: Policy,
        backends: Mapping[str, Backend | None],
        routers: Mapping[str, Router] | None = None,
        acceptance_models: Mapping[str, Acceptance] | None = None,
    ) -> None:
        self._policy = policy
        self._backends = backends
        self._routers = routers or {}
        self._acceptance = acceptance_models or {}

    def _backend(self, tier: str, record: DecisionRecord, started: float) -> Backend | None:
        backend = self._backends.get(tier)
        if backend is None:
            record.add_attempt(
                tier,
                self._policy.tiers[tier].type,
                "",
                started,
                outcome="error",
                error=f"tier '{tier}' is not configured",
            )
        return backend

    def _record_error(
        self, record: DecisionRecord, tier: str, backend: Backend, started: float, exc: BackendError
    ) -> None:
        outcome = exc.kind if exc.kind in ("timeout", "shed") else "error"
        record.add_attempt(
            tier,
            self._policy.tiers[tier].type,
            backend.model,
            started,
            outcome=outcome,
            error=exc.message,
        )

    def _judge(
        self, step: Step, completion: Completion, last: bool, question: str
    ) -> Confidence | None:
        acceptance = step.acceptance
        if acceptance is not None and not last:
            if acceptance.model is None:
                return score(acceptance.method, completion.token_logprobs, acceptance.threshold)
            model = self._acceptance[acceptance.model]
            value = (
                model.score(
                    question, completion.text, completion.token_logprobs, completion.finish_reason
                )
                if completion.token_logprobs
                else 0.0  # as every method: no tokens (or logprobs), never accepted
            )
            return Confidence(acceptance.method, value, acceptance.threshold)
        if completion.token_logprobs is not None:
            return score("mean_prob", completion.token_logprobs, 0.0)
        return None

    async def run(self, plan: Plan, request: ClientRequest, record: DecisionRecord) -> Answer:
        """Find the answer to serve.

        Each step is tried on its tier, then (if that fails) on the tier's fallbacks in
        order; the first that answers stands for the step and is judged by its acceptance.
        With `request.stream`, a step whose answer is always kept is opened as a live stream
        (its first event already received, so a failure can still fall back)."""
        errors: list[BackendError] = []
        best: tuple[float, int, Completion] | None = None  # (confidence, attempt index, answer)
        live_first = request.stream and plan.stream == "live"
        verdict = preroute(plan, self._routers, request.prompt.question)
        if verdict is not None:
            record.classifier = verdict.as_record()
        skipped = 1 if verdict is not None and verdict.skip else 0
        steps = list(enumerate(plan.steps))
        # A skipped step is the last resort: it runs only when every later step failed
        # outright, judged by its acceptance (so not streamed live unless it has none).
        for position, (index, step) in enumerate(steps[skipped:] + steps[:skipped]):
            rescue = position >= len(steps) - skipped
            if rescue and (best is not None or not errors):
                break
            last = not rescue and (index == len(plan.steps) - 1 or live_first)
            for tier in plan.candidates(step.tier):
                result = await self._attempt(
                    tier, step, last=last, request=request, record=record, errors=errors
                )
                if isinstance(result, Answer):
                    return result
                if result is not None:  # answered, but not confidently: next step
                    value, completion = result
                    if best is None or value > best[0]:
                        best = (value, len(record.attempts) - 1, completion)
                    break
        if best is None:
            raise _failure(errors, passthrough=plan.route is None)
        _, attempt_index, completion = best
        attempt = record.attempts[attempt_index]
        attempt.outcome = "degraded"
        return Answer(
            attempt.tier, completion.model, len(record.attempts) - 1, True, completion=completion
        )

    async def _attempt(
        self,
        tier: str,
        step: Step,
        *,
        last: bool,
        request: ClientRequest,
        record: DecisionRecord,
        errors: list[BackendError],
    ) -> Answer | tuple[float, Completion] | None:
        """One tier's try at a step: the Answer to serve, a rejected answer with its
        confidence, or None when the tier failed (recorded in `errors`)."""
        started = time.perf_counter()
        backend = self._backend(tier, record, started)
        if backend is None:
            errors.append(BackendError("unavailable", f"tier '{tier}' is not configured"))
            return None
        keep_always = last or step.acceptance is None
        try:
            if request.stream and keep_always:
                events = await self._open_live(tier, backend, request, record, started)
                return Answer(tier, backend.model, len(record.attempts) - 1, False, events=events)
            completion = await backend.complete(request.prompt, request.params)
        except BackendError as exc:
            self._record_error(record, tier, backend, started, exc)
            errors.append(exc)
            return None
        confidence = self._judge(step, completion, keep_always, request.prompt.question)
        keep = keep_always or (confidence is not None and confidence.accepted)
        record.add_attempt(
            tier,
            self._policy.tiers[tier].type,
            completion.model,
            started,
            ttft_ms=completion.ttft_ms,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            confidence=None if confidence is None else confidence.as_record(),
            outcome="accepted" if keep else "escalated",
        )
        if keep:
            return Answer(
                tier, completion.model, len(record.attempts) - 1, False, completion=completion
            )
        return (confidence.value if confidence is not None else 0.0), completion

    async def _open_live(
        self,
        tier: str,
        backend: Backend,
        request: ClientRequest,
        record: DecisionRecord,
        started: float,
    ) -> AsyncGenerator[StreamEvent, None]:
        stream = backend.stream(request.prompt, request.params)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            raise BackendError("error", f"tier '{tier}' sent an empty stream") from None
        ttft_ms = (time.perf_counter() - started) * 1000
        return self._follow(
            tier, backend, stream, first=first, record=record, started=started, ttft_ms=ttft_ms
        )

    async def _follow(
        self,
        tier: str,
        backend: Backend,
        stream: AsyncGenerator[StreamEvent, None],
        *,
        first: StreamEvent,
        record: DecisionRecord,
        started: float,
        ttft_ms: float,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Pass a live stream through, recording its attempt when it ends (or breaks)."""
        kind = self._policy.tiers[tier].type
        final: StreamEvent | None = None
        failed = False
        try:
            yield first
            final = first if first.finish_reason else None
            async for event in stream:
                if event.finish_reason:
                    final = event
                yield event
        except BackendError as exc:
            failed = True
            self._record_error(record, tier, backend, started, exc)
            raise
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
            if final is not None:
                record.add_attempt(
                    tier,
                    kind,
                    final.model or backend.model,
                    started,
                    ttft_ms=ttft_ms,
                    prompt_tokens=final.prompt_tokens or 0,
                    completion_tokens=final.completion_tokens or 0,
                    outcome="accepted",
                )
            elif not failed:
                record.add_attempt(
                    tier,
                    kind,
                    backend.model,
                    started,
                    ttft_ms=ttft_ms,
                    outcome="error",
                    error="stream ended early (client gone?)",
                )
